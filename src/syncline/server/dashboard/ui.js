// Syncline dashboard: small DOM and formatting helpers shared by the views.
"use strict";

(function () {
  /**
   * Create an element. attrs: {class, text, testid, title, on<event>: fn, ...};
   * children: nodes, strings, or arrays of them (null and false are skipped).
   */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "testid") node.dataset.testid = value;
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    appendChildren(node, children);
    return node;
  }

  function appendChildren(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) appendChildren(node, child);
      else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** Replace all children of node. */
  function fill(node, ...children) {
    node.replaceChildren();
    appendChildren(node, children);
    return node;
  }

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function byTestId(testid, root) {
    return $(`[data-testid="${testid}"]`, root);
  }

  /** Convex JSON, indented: what the editors and result panes show. */
  function prettyJson(value) {
    return value === undefined ? "undefined" : JSON.stringify(value, null, 2);
  }

  /** One line for a table cell: strings bare, everything else as compact JSON. */
  function cellText(value) {
    if (value === undefined) return "";
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function pad(n, width) {
    return String(n).padStart(width || 2, "0");
  }

  /** Milliseconds since the epoch as local "YYYY-MM-DD HH:MM:SS.mmm". */
  function formatTime(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "—";
    const d = new Date(ms);
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
    );
  }

  /** "3.2 s ago" style, for timestamps that matter relative to now. */
  function formatAgo(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "never";
    const seconds = (Date.now() - ms) / 1000;
    if (seconds < 1) return "just now";
    if (seconds < 120) return `${seconds.toFixed(1)} s ago`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
    return formatTime(ms);
  }

  function formatNumber(n, digits) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    return n.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 2 : digits });
  }

  /**
   * Parse text typed by a person as a Convex JSON value. Anything that is not
   * valid JSON is taken as a string, so `alice` and `"alice"` mean the same.
   */
  function parseLooseValue(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return text;
    }
  }

  /** Parse JSON an editor holds; throws an Error whose message a person can act on. */
  function parseJsonStrict(text, what) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not valid JSON: ${e.message}`);
    }
  }

  /** Run fn at most once per `ms` of quiet: for inputs that resubscribe. */
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  /** A <select> of options [[value, label]] with `selected` chosen. */
  function select(testid, options, selected, onchange) {
    return el(
      "select",
      { testid, onchange: (e) => onchange(e.target.value) },
      options.map(([value, label]) => el("option", { value, text: label, selected: value === selected })),
    );
  }

  /** Show message in an error box, or hide the box when message is empty. */
  function showError(box, message) {
    box.textContent = message || "";
    box.hidden = !message;
  }

  window.SynclineUi = {
    el,
    fill,
    $,
    byTestId,
    prettyJson,
    cellText,
    formatTime,
    formatAgo,
    formatNumber,
    parseLooseValue,
    parseJsonStrict,
    debounce,
    select,
    showError,
  };
})();
