// Starts Swagger UI on /api/v1/docs. A file rather than an inline script, so the page's
// Content-Security-Policy can allow scripts from this server only; the bundle itself is served by
// regctl too (the fastapi-offline package), so the docs work with no network.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null, // no badge fetched from swagger.io
  });
})();
