// Syncline dashboard: a small client for Convex's sync protocol and HTTP API.
//
// The dashboard talks to the same endpoints as any Convex client: a WebSocket
// at /api/sync for live queries and mutations, and POST /api/function for
// one-off runs. It authenticates with an admin key, which is what lets it
// call the `_system/...` functions. Values stay in Convex's JSON encoding
// ({"$integer": base64} and friends) end to end, so nothing is lost when a
// document is shown, edited and written back.
"use strict";

(function () {
  const RECONNECT_MIN_MS = 250;
  const RECONNECT_MAX_MS = 8000;

  function randomUuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; plain http on a LAN address is not one.
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function syncUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/api/sync`;
  }

  /** An error from the server, carrying its log lines when it has any. */
  class ServerError extends Error {
    constructor(message, logLines) {
      super(message);
      this.name = "ServerError";
      this.logLines = logLines || [];
    }
  }

  /**
   * POST /api/function as an admin. Resolves to {ok, status, value, logLines}
   * or {ok: false, status, message, logLines}; never throws for an HTTP error,
   * only for a network failure.
   */
  async function runFunction(adminKey, path, args) {
    const response = await fetch("/api/function", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Convex ${adminKey}` },
      body: JSON.stringify({ path, args, format: "json" }),
    });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (response.ok && body && body.status === "success") {
      return { ok: true, status: response.status, value: body.value, logLines: body.logLines || [] };
    }
    // 560 answers {status: "error", errorMessage}; other failures {code, message}.
    let message = `HTTP ${response.status}`;
    if (body && typeof body.errorMessage === "string") message = body.errorMessage;
    else if (body && typeof body.message === "string") message = body.message;
    return {
      ok: false,
      status: response.status,
      code: body && body.code,
      message,
      logLines: (body && body.logLines) || [],
    };
  }

  /**
   * One sync-protocol connection that survives disconnects: it reconnects with
   * backoff under the same session id and re-adds every live query.
   *
   * Callbacks: onStatus(state, detail) with state "connecting" | "connected" |
   * "reconnecting" | "closed"; onAuthError(message) when the server refuses
   * the key (the client then stops for good).
   */
  class SyncClient {
    constructor(adminKey, { onStatus, onAuthError } = {}) {
      this.adminKey = adminKey;
      this.onStatus = onStatus || (() => {});
      this.onAuthError = onAuthError || (() => {});
      this.sessionId = randomUuid();
      this.connectionCount = 0;
      this.lastCloseReason = null;
      this.maxObservedTimestamp = null;
      this.queries = new Map(); // queryId -> {udfPath, args, onUpdate, onError, last}
      this.nextQueryId = 0;
      this.querySetVersion = 0;
      this.mutations = new Map(); // requestId -> {resolve, reject}
      this.nextRequestId = 0;
      this.chunks = new Map(); // transitionId -> [parts]
      this.socket = null;
      this.stopped = false;
      this.retryMs = RECONNECT_MIN_MS;
      this.retryTimer = null;
      this.connect();
    }

    // -- public API ---------------------------------------------------------

    /**
     * Subscribe to a query. onUpdate(value, logLines) runs with every new result,
     * onError(message) when the query fails. Returns a function that unsubscribes.
     */
    subscribe(udfPath, args, onUpdate, onError) {
      const queryId = this.nextQueryId++;
      const query = { udfPath, args: args || {}, onUpdate, onError: onError || (() => {}), last: null };
      this.queries.set(queryId, query);
      this.modifyQuerySet([{ type: "Add", queryId, udfPath, args: [query.args] }]);
      return () => {
        if (!this.queries.delete(queryId)) return;
        this.modifyQuerySet([{ type: "Remove", queryId }]);
      };
    }

    /** Run a mutation over the socket; rejects with a ServerError on failure. */
    mutation(udfPath, args) {
      if (!this.isOpen()) {
        return Promise.reject(new ServerError("Not connected to the server; try again in a moment."));
      }
      const requestId = this.nextRequestId++;
      return new Promise((resolve, reject) => {
        this.mutations.set(requestId, { resolve, reject });
        this.send({ type: "Mutation", requestId, udfPath, args: [args || {}] });
      });
    }

    close() {
      this.stopped = true;
      clearTimeout(this.retryTimer);
      this.failPendingMutations("The dashboard signed out.");
      if (this.socket) this.socket.close(1000, "signed out");
      this.socket = null;
      this.onStatus("closed");
    }

    // -- connection ---------------------------------------------------------

    isOpen() {
      return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
    }

    connect() {
      if (this.stopped) return;
      this.onStatus(this.connectionCount === 0 ? "connecting" : "reconnecting");
      const socket = new WebSocket(syncUrl());
      this.socket = socket;
      socket.onopen = () => this.handleOpen(socket);
      socket.onmessage = (event) => this.handleFrame(socket, event.data);
      socket.onclose = (event) => this.handleClose(socket, event);
      // onerror is always followed by onclose, which does the work.
    }

    handleOpen(socket) {
      if (socket !== this.socket) return;
      const connect = {
        type: "Connect",
        sessionId: this.sessionId,
        connectionCount: this.connectionCount,
        lastCloseReason: this.lastCloseReason,
        clientTs: Date.now(),
      };
      // Never be shown data older than what this page has already shown.
      if (this.maxObservedTimestamp !== null) connect.maxObservedTimestamp = this.maxObservedTimestamp;
      this.send(connect);
      // Authenticate before adding queries so that they run as the admin from the start.
      this.send({ type: "Authenticate", baseVersion: 0, tokenType: "Admin", value: this.adminKey });
      // A new connection starts from query set version 0: re-add every live query.
      this.querySetVersion = 0;
      const adds = [];
      for (const [queryId, query] of this.queries) {
        adds.push({ type: "Add", queryId, udfPath: query.udfPath, args: [query.args] });
      }
      if (adds.length > 0) this.modifyQuerySet(adds);
      this.connectionCount += 1;
      this.retryMs = RECONNECT_MIN_MS;
      this.onStatus("connected");
    }

    handleClose(socket, event) {
      if (socket !== this.socket) return;
      this.socket = null;
      this.lastCloseReason = event.reason || `closed with code ${event.code}`;
      this.failPendingMutations(
        "The connection closed before the server answered; the mutation may or may not have been applied.",
      );
      if (this.stopped) return;
      // Backoff with jitter, so that many dashboards do not all return at once.
      const delay = this.retryMs * (0.5 + Math.random() / 2);
      this.retryMs = Math.min(this.retryMs * 2, RECONNECT_MAX_MS);
      this.onStatus("reconnecting", this.lastCloseReason);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    send(message) {
      if (this.isOpen()) this.socket.send(JSON.stringify(message));
    }

    modifyQuerySet(modifications) {
      // While disconnected, the query map is the truth: handleOpen re-adds it.
      if (!this.isOpen()) return;
      const baseVersion = this.querySetVersion;
      this.querySetVersion += 1;
      this.send({ type: "ModifyQuerySet", baseVersion, newVersion: this.querySetVersion, modifications });
    }

    failPendingMutations(message) {
      for (const { reject } of this.mutations.values()) reject(new ServerError(message));
      this.mutations.clear();
    }

    // -- incoming -----------------------------------------------------------

    handleFrame(socket, data) {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(data);
      } catch (e) {
        console.warn("Syncline dashboard: ignoring a frame that is not JSON", e);
        return;
      }
      this.handleMessage(message);
    }

    handleMessage(message) {
      switch (message.type) {
        case "Transition":
          this.handleTransition(message);
          break;
        case "TransitionChunk":
          this.handleChunk(message);
          break;
        case "MutationResponse":
          this.handleMutationResponse(message);
          break;
        case "AuthError":
          // The key was refused: reconnecting with it would only be refused again.
          this.stopped = true;
          this.onAuthError(message.error || "The admin key was refused.");
          this.close();
          break;
        case "FatalError":
          // The server closes the socket next; onclose reconnects. A server that
          // lost data (a fresh dev deployment) will never catch up with an old
          // timestamp, so forget it rather than fail forever.
          this.lastCloseReason = message.error;
          this.maxObservedTimestamp = null;
          this.onStatus("reconnecting", message.error);
          break;
        case "Ping":
        case "ActionResponse":
        default:
          break;
      }
    }

    handleChunk(message) {
      const parts = this.chunks.get(message.transitionId) || [];
      parts[message.partNumber] = message.chunk;
      this.chunks.set(message.transitionId, parts);
      if (parts.filter((p) => p !== undefined).length === message.totalParts) {
        this.chunks.delete(message.transitionId);
        this.handleMessage(JSON.parse(parts.join("")));
      }
    }

    handleTransition(message) {
      if (message.endVersion && message.endVersion.ts) {
        this.maxObservedTimestamp = message.endVersion.ts;
      }
      for (const modification of message.modifications || []) {
        const query = this.queries.get(modification.queryId);
        if (!query) continue; // removed by the page since
        if (modification.type === "QueryUpdated") {
          query.last = { value: modification.value };
          query.onUpdate(modification.value, modification.logLines || []);
        } else if (modification.type === "QueryFailed") {
          query.last = { error: modification.errorMessage };
          query.onError(modification.errorMessage, modification.logLines || []);
        }
      }
    }

    handleMutationResponse(message) {
      const pending = this.mutations.get(message.requestId);
      if (!pending) return;
      this.mutations.delete(message.requestId);
      if (message.success) pending.resolve(message.result);
      else pending.reject(new ServerError(String(message.result), message.logLines));
    }
  }

  window.SynclineSync = { SyncClient, ServerError, runFunction };
})();
