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
  // Every bar of the top ten carries its customer (no tick skipped) and its amount at its end.
  var barValues = {
    id: "barValues",
    afterDatasetsDraw: function (c) {
      var ctx = c.ctx;
      ctx.save();
      ctx.fillStyle = "#212529";
      ctx.font = "12px sans-serif";
      ctx.textBaseline = "middle";
      c.getDatasetMeta(0).data.forEach(function (bar, i) {
        ctx.fillText("¥" + c.data.datasets[0].data[i].toFixed(2), bar.x + 4, bar.y);
      });
      ctx.restore();
    }
  };
  chart("chart-top", { type: "bar", plugins: [barValues], options: options({ indexAxis: "y",
    layout: { padding: { right: 80 } },
    scales: { x: { beginAtZero: true }, y: { ticks: { autoSkip: false } } } }),
    data: { labels: data.top.labels, datasets: [
      { label: "消费（元）", data: data.top.values.map(money), backgroundColor: "#fd7e14" }
    ] } });
  chart("chart-activity", { type: "doughnut", options: options(), data: { labels: data.activity.labels, datasets: [
    { label: "客户数", data: data.activity.values, backgroundColor: ["#198754", "#0d6efd", "#ffc107", "#adb5bd"] }
  ] } });
})();
