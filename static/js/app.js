// Shop CRM page behaviour. No inline scripts: the Content-Security-Policy forbids them.
(function () {
  "use strict";
  // A form submits once: a double-click or an impatient second Enter does not send it again.
  // The form is marked busy and later submits are ignored; its buttons are NOT disabled, since
  // a disabled submitter is left out of the form data (the 冻结 / 挂失 buttons' `action` value).
  // The busy look comes from the CSS ([data-submitted] .btn).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.submitted === "1") {
      event.preventDefault();
      return;
    }
    // 注销 and 冲正 move money back: the clerk confirms, told the amount (data-confirm).
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    form.setAttribute("aria-busy", "true");
  });
  // Buttons that print the page (the receipt's print CSS shows only the receipt).
  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action=print]");
    if (target) window.print();
    // An error page's 返回上一页: back where the clerk came from (home when opened directly).
    if (event.target.closest("[data-action=back]")) {
      if (window.history.length > 1) window.history.back();
      else window.location.href = "/";
    }
  });
  // 消费: what the card is charged (实扣) as the clerk types, by the ledger's rule
  // (crm.services.ledger.discounted: percent, rounded half up, at least 0.01). The server
  // charges by the same rule; this only shows it.
  var FULL_WIDTH = /[\uff10-\uff19\uff0e]/g;
  function fenOf(text) {
    text = text.trim().replace(FULL_WIDTH, function (ch) {
      return ch === "\uff0e" ? "." : String.fromCharCode(ch.charCodeAt(0) - 0xfee0);
    }).replace(/^[¥￥]\s*/, "");  // the server takes a typed ¥ too
    var match = /^([0-9]{1,12})(?:\.([0-9]{1,2}))?$/.exec(text);
    if (!match) return null;
    return BigInt(match[1]) * 100n + BigInt((match[2] || "").padEnd(2, "0"));
  }
  function yuan(fen) {
    var cents = (fen % 100n).toString().padStart(2, "0");
    return "¥" + (fen / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + cents;
  }
  document.addEventListener("input", function (event) {
    var form = event.target.closest("#consume-form");
    if (!form || event.target.name !== "amount") return;
    var shown = document.getElementById("charged");
    var fen = fenOf(event.target.value);
    if (fen === null) {
      shown.textContent = event.target.value.trim() ? "金额格式：数字，最多两位小数，例如 100 或 99.50" : "—";
      return;
    }
    if (fen === 0n) {
      shown.textContent = "金额必须大于 0";
      return;
    }
    var discount = parseInt(form.dataset.discount || "0", 10);
    var charged = fen;
    if (discount > 0 && discount < 100) {
      charged = (fen * BigInt(discount) + 50n) / 100n;
      if (charged < 1n) charged = 1n;
    }
    shown.textContent = yuan(charged);
  });
  // Coming back with the browser's Back button shows the page as it was left: enable it again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      form.removeAttribute("aria-busy");
    });
  });
})();
