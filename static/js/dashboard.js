// 统计分析: draws the dashboard's charts from the JSON the page carries (no inline script).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var money = function (v) { return Number(v); };
  // A fresh options object per chart: Chart.js fills in the object it is given.
  function options(extra) {
    return Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, extra || {});
  }
  var fromZero = { scales: { y: { beginAtZero: true }, x: { beginAtZero: true } } };
  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { new Chart(canvas, config); canvas.dataset.drawn = "1"; }
  }
  chart("chart-daily", { type: "line", options: options(fromZero), data: { labels: data.daily.labels, datasets: [
    { label: "充值", data: data.daily.recharge.map(money), borderColor: "#0d6efd", backgroundColor: "#0d6efd" },
    { label: "消费", data: data.daily.consume.map(money), borderColor: "#dc3545", backgroundColor: "#dc3545" }
  ] } });
  chart("chart-by_type", { type: "bar", options: options(fromZero), data: { labels: data.by_type.labels, datasets: [
    { label: "消费（元）", data: data.by_type.values.map(money), backgroundColor: "#198754" }
  ] } });
  chart("chart-top", { type: "bar", options: options(Object.assign({ indexAxis: "y" }, fromZero)), data: { labels: data.top.labels, datasets: [
    { label: "消费（元）", data: data.top.values.map(money), backgroundColor: "#fd7e14" }
  ] } });
  chart("chart-activity", { type: "doughnut", options: options(), data: { labels: data.activity.labels, datasets: [
    { label: "客户数", data: data.activity.values, backgroundColor: ["#198754", "#0d6efd", "#ffc107", "#adb5bd"] }
  ] } });
})();
