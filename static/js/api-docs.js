// 接口文档: Swagger UI over this app's own OpenAPI document. No inline script (the CSP forbids
// it), and nothing leaves this machine: the document is same-origin, the validator badge is off,
// and addresses in the query string (?url=, ?configUrl=) are ignored.
// Swagger UI (not Redoc) because it runs under the site's strict CSP unchanged, so the page gets
// no relaxation: React sets style attributes through the CSSOM, which style-src 'self' allows
// (only parsed style attributes and <style> elements are blocked); its stylesheet is a file whose
// images are data: URIs (img-src allows data:); "Try it out" calls are same-origin; the bundle's
// Function("return this") fallbacks are never reached (`self` exists), so no 'unsafe-eval'.
// tests/test_api_docs.py fails on any CSP violation (a console error) or off-machine request.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  SwaggerUIBundle({
    url: root.dataset.url,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",  // no top bar: it offers to load any other address
    validatorUrl: null,
    queryConfigEnabled: false,
    persistAuthorization: false,  // the typed token stays in memory, never in localStorage
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    onComplete: function () { root.dataset.ready = "1"; }
  });
})();
