// driver.mjs drives Socket.IO clients (socket.io-client 4.8) for presenced's
// e2e tests (e2e/socketio_test.go), so that the tests talk to /socket.io/
// through the reference client rather than a hand-written one.
//
// Usage: node driver.mjs ['<scenario JSON>']
//
// The scenario is the first argument or, without one, the first line of
// stdin. Every further stdin line is a command. The driver prints one JSON
// object per line on stdout and nothing else there; its own trouble goes to
// stderr and the exit code.
//
// Scenario:
//   {
//     "url": "http://127.0.0.1:8080",   // default for every client
//     "path": "/socket.io/",            // Engine.IO path (SOCKETIO_PATH)
//     "transports": ["polling", "websocket"],
//     "namespace": "/",
//     "reconnection": true,             // socket.io-client's default
//     "reportPings": false,             // print a "ping" line per server ping
//     "exitWhenDone": false,            // exit 0 once no client is connected
//                                       // or trying to connect
//     "timeoutMs": 120000,              // hard limit: exit 3 after this
//     "clients": [ {"token": "...", "url": ..., "path": ..., "transports": ...,
//                   "namespace": ..., "reconnection": ...}, ... ]
//   }
// A client without "token" (or with null) sends no auth at all; "auth"
// instead of "token" sends that object as is.
//
// Commands (one JSON object per stdin line):
//   {"cmd":"emit","client":0,"event":"presence:count","args":[],"ack":true,
//    "ackTimeoutMs":5000,"id":"q1"}   -> an "ack" line (with "args", or "error")
//   {"cmd":"close","client":0}        -> socket.disconnect(); no "client": all
//   {"cmd":"open","clients":[{...}]}  -> more clients, numbered on from the last
//   {"cmd":"state"}                   -> a "state" line listing every client
//   {"cmd":"exit"}                    -> disconnect all, exit 0
// End of stdin is "exit" too, so that the driver never outlives its test.
//
// Output lines all carry "event" and "t" (ms since the driver started);
// those about one client carry "client" (its index) and, when an Engine.IO
// session exists, "transport" (socket.io.engine.transport.name):
//   ready {clients}            every client of the scenario created
//   open                       an Engine.IO session opened (Manager "open")
//   connect {id}               Socket.IO CONNECT accepted
//   connect_error {message, data}
//   disconnect {reason, description}
//   upgrade {transport}        the engine upgraded (polling -> websocket)
//   engine_close {reason, description}
//   reconnect_attempt {attempt}
//   ping                       with reportPings
//   message {name, args}       any event the server emitted
//   ack {id, name, args | error}
//   state {clients: [{client, connected, active, id, transport}]}
//   error {message}            a bad command or scenario
//   exit {reason, code}        the last line
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const started = performance.now();
const now = () => Math.round((performance.now() - started) * 10) / 10;

function emitLine(obj) {
  // Pipes are synchronous on Linux, so a line is out before any exit.
  process.stdout.write(JSON.stringify({ ...obj, t: now() }) + "\n");
}

function describe(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  if (typeof value === "object") {
    if (typeof value.description === "string") return value.description;
    if (value.description instanceof Error) return value.description.message;
    if (typeof value.message === "string") return value.message;
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

let scenario = null;
let noScenarioTimer = null;
const clients = []; // socket.io-client sockets, by index
let exiting = false;

function transportOf(socket) {
  return socket.io.engine?.transport?.name;
}

function finish(code, reason) {
  if (exiting) return;
  exiting = true;
  for (const s of clients) {
    try {
      s.disconnect();
    } catch {
      // exiting anyway
    }
  }
  emitLine({ event: "exit", reason, code });
  // A moment for DISCONNECT packets and close frames to leave.
  setTimeout(() => process.exit(code), 100);
}

function option(spec, name, fallback) {
  if (spec[name] !== undefined) return spec[name];
  if (scenario[name] !== undefined) return scenario[name];
  return fallback;
}

function checkDone() {
  if (!scenario?.exitWhenDone || exiting) return;
  // A client is done when it is neither connected nor going to try again
  // (socket.active is false after "io server disconnect", "io client
  // disconnect" and a CONNECT_ERROR from the server).
  // Without reconnection, a client that lost its connection is done too.
  if (clients.every((s) => !s.connected && (!s.active || !s.io.reconnection()))) {
    finish(0, "all clients done");
  }
}

function openClient(spec) {
  const index = clients.length;
  const url = option(spec, "url", undefined);
  if (typeof url !== "string") {
    throw new Error(`client ${index}: no url`);
  }
  const namespace = option(spec, "namespace", "/");
  const opts = {
    path: option(spec, "path", "/socket.io/"),
    transports: option(spec, "transports", ["polling", "websocket"]),
    reconnection: option(spec, "reconnection", true),
    // Every client is its own connection: without forceNew, clients of one
    // URL would share a Manager and so one Engine.IO session.
    forceNew: true,
  };
  if (spec.auth !== undefined) {
    opts.auth = spec.auth;
  } else if (spec.token !== undefined && spec.token !== null) {
    opts.auth = { token: spec.token };
  }
  const reportPings = option(spec, "reportPings", false);
  const socket = io(url.replace(/\/+$/, "") + (namespace === "/" ? "" : namespace), opts);
  clients.push(socket);
  const line = (obj) => emitLine({ client: index, ...obj, transport: transportOf(socket) });

  socket.io.on("open", () => {
    line({ event: "open" });
    const engine = socket.io.engine;
    engine.on("upgrade", (transport) => line({ event: "upgrade", transport: transport?.name }));
  });
  socket.io.on("close", (reason, description) =>
    line({ event: "engine_close", reason, description: describe(description) }),
  );
  socket.io.on("reconnect_attempt", (attempt) => line({ event: "reconnect_attempt", attempt }));
  if (reportPings) {
    socket.io.on("ping", () => line({ event: "ping" }));
  }
  socket.on("connect", () => line({ event: "connect", id: socket.id }));
  socket.on("connect_error", (err) => {
    line({ event: "connect_error", message: err?.message ?? String(err), data: err?.data });
    // Let socket.active settle: it turns false after the handler returns
    // when the server refused the CONNECT.
    setImmediate(checkDone);
  });
  socket.on("disconnect", (reason, description) => {
    line({ event: "disconnect", reason, description: describe(description) });
    setImmediate(checkDone);
  });
  socket.onAny((name, ...args) => line({ event: "message", name, args }));
  return index;
}

function clientAt(cmd) {
  const s = clients[cmd.client];
  if (!Number.isInteger(cmd.client) || !s) {
    throw new Error(`no client ${JSON.stringify(cmd.client)} (have ${clients.length})`);
  }
  return s;
}

function run(cmd) {
  switch (cmd.cmd) {
    case "emit": {
      const s = clientAt(cmd);
      const args = Array.isArray(cmd.args) ? cmd.args : [];
      if (cmd.ack) {
        s.timeout(cmd.ackTimeoutMs ?? 5000).emit(cmd.event, ...args, (err, ...reply) => {
          if (err) {
            emitLine({ client: cmd.client, event: "ack", id: cmd.id, name: cmd.event, error: describe(err) });
          } else {
            emitLine({ client: cmd.client, event: "ack", id: cmd.id, name: cmd.event, args: reply });
          }
        });
      } else {
        s.emit(cmd.event, ...args);
      }
      break;
    }
    case "close":
      if (cmd.client === undefined) {
        for (const s of clients) s.disconnect();
      } else {
        clientAt(cmd).disconnect();
      }
      break;
    case "open": {
      const specs = Array.isArray(cmd.clients) ? cmd.clients : [];
      const first = clients.length;
      for (const spec of specs) openClient(spec);
      emitLine({ event: "opened", from: first, clients: specs.length });
      break;
    }
    case "state":
      emitLine({
        event: "state",
        clients: clients.map((s, i) => ({
          client: i,
          connected: s.connected,
          active: s.active,
          id: s.id,
          transport: transportOf(s),
        })),
      });
      break;
    case "exit":
      finish(0, "exit command");
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
  }
}

function start(text) {
  try {
    scenario = JSON.parse(text);
  } catch (err) {
    emitLine({ event: "error", message: `scenario is not JSON: ${err.message}` });
    finish(2, "bad scenario");
    return;
  }
  clearTimeout(noScenarioTimer);
  const limit = Number(scenario.timeoutMs ?? 120000);
  // Unref'd: it only ends a driver that something else keeps running.
  setTimeout(() => finish(3, `hard limit of ${limit} ms`), limit).unref();
  try {
    for (const spec of scenario.clients ?? []) openClient(spec);
  } catch (err) {
    emitLine({ event: "error", message: err.message });
    finish(2, "bad scenario");
    return;
  }
  emitLine({ event: "ready", clients: clients.length });
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
if (process.argv.length > 2) {
  start(process.argv[2]);
}
lines.on("line", (text) => {
  if (exiting || text.trim() === "") return;
  if (scenario === null) {
    start(text);
    return;
  }
  try {
    run(JSON.parse(text));
  } catch (err) {
    emitLine({ event: "error", message: err.message });
  }
});
lines.on("close", () => finish(0, "end of stdin"));
// A hard limit even before a scenario arrives.
noScenarioTimer = setTimeout(() => finish(3, "hard limit (no scenario)"), 120000).unref();
