// Drives the official convex npm client for Syncline's end-to-end tests.
// One JSON command per stdin line; one JSON reply per command on stdout
// ({seq, ok, value} or {seq, ok: false, error, data, name}); subscription
// updates as {event: "update" | "error", sub, value}.
import { createInterface } from "node:readline";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { convexToJson, jsonToConvex, ConvexError } from "convex/values";
import WebSocket from "ws";

// The client logs through console; keep stdout for replies only.
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...parts) => process.stderr.write(parts.map(String).join(" ") + "\n");
}

const clients = new Map();
const subscriptions = new Map();
let nextSub = 1;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function errorReply(seq, e) {
  const reply = { seq, ok: false, error: String(e && e.message), name: e && e.constructor && e.constructor.name };
  if (e instanceof ConvexError) reply.data = convexToJson(e.data);
  return reply;
}

async function handle(cmd) {
  const args = cmd.args === undefined ? {} : jsonToConvex(cmd.args);
  switch (cmd.op) {
    case "client": {
      const client = cmd.http
        ? new ConvexHttpClient(cmd.url)
        : new ConvexClient(cmd.url, { webSocketConstructor: WebSocket, unsavedChangesWarning: false });
      if (cmd.adminKey) client.setAdminAuth(cmd.adminKey);
      if (cmd.token) {
        if (cmd.http) client.setAuth(cmd.token);
        else client.setAuth(async () => cmd.token);
      }
      clients.set(cmd.name, client);
      return null;
    }
    case "query":
      return convexToJson(await clients.get(cmd.client).query(cmd.path, args));
    case "mutation":
      return convexToJson(await clients.get(cmd.client).mutation(cmd.path, args));
    case "action":
      return convexToJson(await clients.get(cmd.client).action(cmd.path, args));
    case "subscribe": {
      const sub = nextSub++;
      const unsubscribe = clients.get(cmd.client).onUpdate(
        cmd.path,
        args,
        (value) => emit({ event: "update", sub, value: convexToJson(value) }),
        (e) => emit({ event: "error", sub, error: String(e.message), data: e instanceof ConvexError ? convexToJson(e.data) : null }),
      );
      subscriptions.set(sub, unsubscribe);
      return sub;
    }
    case "unsubscribe":
      subscriptions.get(cmd.sub)();
      subscriptions.delete(cmd.sub);
      return null;
    case "connectionState":
      return clients.get(cmd.client).connectionState();
    case "close":
      await clients.get(cmd.client).close?.();
      clients.delete(cmd.client);
      return null;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line);
  handle(cmd).then(
    (value) => emit({ seq: cmd.seq, ok: true, value: value === undefined ? null : value }),
    (e) => emit(errorReply(cmd.seq, e)),
  );
});
lines.on("close", async () => {
  for (const client of clients.values()) await client.close?.();
  process.exit(0);
});
