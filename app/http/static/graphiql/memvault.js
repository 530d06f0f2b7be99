// memvault's GraphiQL bootstrap: a fetcher against this page's own URL (GET /graphql serves the
// page, POST /graphql answers the operations), the docs and query explorers, and the Headers tab
// open when the server requires an API key ({"Authorization": "Bearer <key>"} goes there).
(function () {
  "use strict";
  var keysRequired = document.body.getAttribute("data-keys-required") === "true";
  var url = window.location.origin + window.location.pathname;
  var fetcher = GraphiQL.createFetcher({ url: url });
  var explorer = GraphiQLPluginExplorer.explorerPlugin();
  var params = new URLSearchParams(window.location.search);
  var props = {
    fetcher: fetcher,
    plugins: [explorer],
    defaultEditorToolsVisibility: keysRequired ? "headers" : true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    inputValueDeprecation: true,
  };
  if (params.has("q")) props.defaultQuery = params.get("q");
  if (keysRequired) props.defaultHeaders = '{"Authorization": "Bearer "}';
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, props));
})();
