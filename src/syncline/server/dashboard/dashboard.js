// Syncline dashboard: sign-in, the page's frame (top bar, navigation) and
// wiring the views to one live connection.
"use strict";

(function () {
  const { SyncClient, runFunction } = window.SynclineSync;
  const { byTestId, fill, showError } = window.SynclineUi;
  const KEY_STORAGE = "syncline.dashboard.adminKey";
  const DEFAULT_VIEW = "data";

  /** What a signed-in page holds; replaced wholesale on sign-out. */
  let session = null;

  // -- sign-in ----------------------------------------------------------------

  /**
   * Ask the server whether `key` is an admin key, with a call only an admin may
   * make. Resolves to null when it is, or to a message to show.
   */
  async function checkKey(key) {
    let result;
    try {
      result = await runFunction(key, "_system/deployment:describe", {});
    } catch (e) {
      return `Could not reach the server: ${e.message}`;
    }
    if (result.ok) return null;
    return result.message;
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const input = byTestId("login-key");
    const error = byTestId("login-error");
    const button = byTestId("login-submit");
    const key = input.value.trim();
    if (!key) {
      showError(error, "Enter the admin key.");
      return;
    }
    button.disabled = true;
    button.textContent = "Checking…";
    showError(error, "");
    const problem = await checkKey(key);
    button.disabled = false;
    button.textContent = "Sign in";
    if (problem !== null) {
      showError(error, problem);
      input.select();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    startSession(key);
  }

  function showLogin(message) {
    byTestId("app").hidden = true;
    byTestId("login-view").hidden = false;
    showError(byTestId("login-error"), message || "");
    byTestId("login-key").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    stopSession();
    byTestId("login-key").value = "";
    showLogin(message);
  }

  // -- a signed-in session ------------------------------------------------------

  function startSession(key) {
    stopSession();
    const client = new SyncClient(key, {
      onStatus: showConnection,
      onAuthError: (message) => signOut(`The server refused the admin key: ${message}`),
    });
    session = {
      adminKey: key,
      client,
      describe: null,
      describeListeners: new Set(),
      views: new Map(),
      current: null,
    };
    // Every view reads the deployment's description; one subscription serves them all.
    session.stopDescribe = client.subscribe(
      "_system/deployment:describe",
      {},
      (describe) => {
        session.describe = describe;
        showDeploymentSummary(describe);
        for (const listener of session.describeListeners) listener(describe);
      },
      (message) => showDeploymentSummary(null, message),
    );
    for (const section of document.querySelectorAll("main .view")) {
      fill(section); // a fresh page for a fresh session
      const factory = window.SynclineViews[section.dataset.view];
      session.views.set(section.dataset.view, factory(session, section));
    }
    byTestId("login-view").hidden = true;
    byTestId("app").hidden = false;
    showView(currentViewName());
  }

  function stopSession() {
    if (session === null) return;
    if (session.current) session.current.hide();
    session.client.close();
    session = null;
  }

  function showDeploymentSummary(describe, error) {
    const box = byTestId("deployment-summary");
    if (describe) {
      box.textContent = `${describe.mode} · version ${describe.version}`;
      box.title = "";
    } else {
      box.textContent = "description unavailable";
      box.title = error || "";
    }
  }

  const STATUS_LABELS = {
    connecting: "Connecting…",
    connected: "Live",
    reconnecting: "Reconnecting…",
    closed: "Disconnected",
  };

  function showConnection(state, detail) {
    const box = byTestId("connection-status");
    box.dataset.state = state;
    box.querySelector(".label").textContent = STATUS_LABELS[state] || state;
    box.title = detail ? `Last close: ${detail}` : "";
  }

  // -- navigation ------------------------------------------------------------------

  function currentViewName() {
    const name = window.location.hash.replace(/^#/, "");
    return window.SynclineViews[name] ? name : DEFAULT_VIEW;
  }

  /** Show one view; only the visible view keeps its live subscriptions. */
  function showView(name) {
    if (session === null) return;
    const view = session.views.get(name);
    if (session.current === view) return;
    if (session.current) session.current.hide();
    session.current = view;
    for (const section of document.querySelectorAll("main .view")) {
      section.hidden = section.dataset.view !== name;
    }
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.view === name);
    }
    view.show();
  }

  function init() {
    byTestId("login-form").addEventListener("submit", onLoginSubmit);
    byTestId("sign-out").addEventListener("click", () => signOut());
    window.addEventListener("hashchange", () => showView(currentViewName()));
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) {
      // Check it again: the deployment may have been recreated with new keys.
      checkKey(saved).then((problem) => {
        if (problem === null) startSession(saved);
        else signOut(problem);
      });
    } else {
      showLogin();
    }
  }

  init();
})();
