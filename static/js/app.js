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
  // Coming back with the browser's Back button shows the page as it was left: enable it again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      form.removeAttribute("aria-busy");
    });
  });
})();
