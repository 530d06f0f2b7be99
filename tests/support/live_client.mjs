// The README's browser example ("Live updates") in Node: `node live_client.mjs EXAMPLE SESSION`
// imports EXAMPLE (the README's ```js block, its url pointed at the server under test, with
// `export { client, follow }` added), calls follow(SESSION, show) and prints one JSON line per
// memory shown ({"memory": ...}) and per connection event ({"connected": ...}, {"closed": ...}).
// Node 20 has no WebSocket: the `ws` package stands in for the browser's, as a global.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [example, sessionId] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

globalThis.WebSocket = createRequire(example)("ws");
globalThis.apiKey = process.env.API_KEY; // the example's free `apiKey`, as a page would have it
const { client, follow } = await import(pathToFileURL(example).href);
client.on("connected", (_socket, _payload, wasRetry) => print({ connected: wasRetry }));
client.on("closed", (event) => print({ closed: event.code }));
follow(sessionId, (memory) => print({ memory }));
