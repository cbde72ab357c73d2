// Syncline dashboard: the Data view. Browse a table's documents live, filter
// them by an index, and insert, edit or delete documents.
"use strict";

(function () {
  const { el, fill, prettyJson, cellText, formatTime, parseLooseValue, parseJsonStrict, select, showError } =
    window.SynclineUi;
  const PAGE_SIZE = 50;
  const DEFAULT_INDEX = "by_creation_time";

  function createDataView(session, root) {
    const state = {
      table: null, // name of the selected table
      index: DEFAULT_INDEX,
      eq: [], // typed values for the index's leading fields, as text
      order: "desc",
      pages: [], // [{cursor, result, error, unsubscribe}] in order
      editing: null, // {mode: "edit" | "insert", id, originalText}
      showSystem: false,
      lastJson: new Map(), // _id -> JSON shown last time, to mark changes
      visible: false,
    };

    // -- layout ------------------------------------------------------------------
    const tableList = el("ul", { class: "list", testid: "table-list" });
    const systemToggle = el("input", {
      type: "checkbox",
      testid: "show-system-tables",
      onchange: (e) => {
        state.showSystem = e.target.checked;
        renderTables();
      },
    });
    const toolbar = el("div", { class: "toolbar", testid: "data-toolbar" });
    const queryError = el("div", { class: "error", testid: "data-error", role: "alert", hidden: true });
    const docsBox = el("div", { class: "table-scroll", testid: "documents" });
    const footer = el("div", { class: "table-footer" });
    const editor = el("aside", { class: "editor", testid: "doc-editor-panel", hidden: true });

    fill(
      root,
      el(
        "div",
        { class: "data-layout" },
        el(
          "div",
          { class: "panel table-panel" },
          el("h2", { text: "Tables" }),
          tableList,
          el("label", { class: "checkbox" }, systemToggle, " Show system tables"),
        ),
        el(
          "div",
          { class: "panel docs-panel" },
          toolbar,
          queryError,
          docsBox,
          footer,
        ),
        editor,
      ),
    );

    // -- tables --------------------------------------------------------------------

    function tables() {
      const all = (session.describe && session.describe.tables) || [];
      return all.filter((t) => state.showSystem || !t.system);
    }

    function tableInfo(name) {
      const all = (session.describe && session.describe.tables) || [];
      return all.find((t) => t.name === name) || null;
    }

    function renderTables() {
      const list = tables();
      if (!session.describe) {
        fill(tableList, el("li", { class: "muted", text: "Loading…" }));
        return;
      }
      if (list.length === 0) {
        fill(tableList, el("li", { class: "muted", text: "No tables." }));
        return;
      }
      fill(
        tableList,
        list.map((t) =>
          el(
            "li",
            {},
            el(
              "button",
              {
                type: "button",
                class: t.name === state.table ? "list-item active" : "list-item",
                testid: "table-item",
                "data-table": t.name,
                onclick: () => selectTable(t.name),
              },
              t.name,
              t.system ? el("span", { class: "badge", text: "system" }) : null,
            ),
          ),
        ),
      );
    }

    function selectTable(name) {
      state.table = name;
      state.index = DEFAULT_INDEX;
      state.eq = [];
      closeEditor();
      renderTables();
      renderToolbar();
      resubscribe();
    }

    // -- the filter toolbar -----------------------------------------------------------

    /** The selected table's indexes, always with the built-in creation-time order. */
    function indexes() {
      const info = tableInfo(state.table);
      const list = (info && info.indexes) || [];
      if (list.some((i) => i.name === DEFAULT_INDEX)) return list;
      return [{ name: DEFAULT_INDEX, fields: ["_creationTime"] }, ...list];
    }

    function indexFields() {
      const index = indexes().find((i) => i.name === state.index);
      return (index && index.fields) || [];
    }

    function renderToolbar() {
      if (state.table === null) {
        fill(toolbar, el("h2", { text: "Select a table" }));
        return;
      }
      const eqInputs = indexFields().map((field, i) =>
        el("input", {
          type: "text",
          class: "eq-input",
          testid: `eq-${field}`,
          placeholder: `${field} =`,
          title: `Equality value for ${field} (JSON, or plain text for a string). Fill the leading fields in order.`,
          value: state.eq[i] || "",
          onkeydown: (e) => {
            if (e.key === "Enter") applyFilter();
          },
        }),
      );
      fill(
        toolbar,
        el("h2", { testid: "data-table-name", text: state.table }),
        el(
          "label",
          {},
          "Index ",
          select(
            "data-index",
            indexes().map((i) => [i.name, i.fields.length ? `${i.name} (${i.fields.join(", ")})` : i.name]),
            state.index,
            (value) => {
              state.index = value;
              state.eq = [];
              renderToolbar();
              resubscribe();
            },
          ),
        ),
        eqInputs,
        eqInputs.length ? el("button", { type: "button", testid: "data-apply", text: "Filter", onclick: applyFilter }) : null,
        el(
          "label",
          {},
          "Order ",
          select("data-order", [["desc", "newest first"], ["asc", "oldest first"]], state.order, (value) => {
            state.order = value;
            resubscribe();
          }),
        ),
        el("div", { class: "spacer" }),
        el("button", { type: "button", class: "primary", testid: "doc-add", text: "Add document", onclick: openInsert }),
      );
    }

    function applyFilter() {
      state.eq = Array.from(toolbar.querySelectorAll(".eq-input"), (input) => input.value);
      resubscribe();
    }

    /** Equality values for the leading fields that were filled in, in order. */
    function eqValues() {
      const values = [];
      for (const text of state.eq) {
        if (text.trim() === "") break;
        values.push(parseLooseValue(text.trim()));
      }
      return values;
    }

    // -- live pages ----------------------------------------------------------------

    function unsubscribeAll() {
      for (const page of state.pages) page.unsubscribe();
      state.pages = [];
    }

    function resubscribe() {
      unsubscribeAll();
      state.lastJson = new Map();
      if (state.table === null || !state.visible) {
        renderDocuments();
        return;
      }
      addPage(null);
    }

    /** Subscribe to one more page, starting at `cursor` (null: the first page). */
    function addPage(cursor) {
      const args = { table: state.table, index: state.index, order: state.order, cursor, numItems: PAGE_SIZE };
      const eq = eqValues();
      if (eq.length > 0) args.eq = eq;
      const page = { cursor, result: null, error: null, unsubscribe: null };
      state.pages.push(page);
      page.unsubscribe = session.client.subscribe(
        "_system/data:page",
        args,
        (result) => {
          page.result = result;
          page.error = null;
          renderDocuments();
        },
        (message) => {
          page.error = message;
          renderDocuments();
        },
      );
      renderDocuments();
    }

    function loadMore() {
      const last = state.pages[state.pages.length - 1];
      if (last && last.result && !last.result.isDone) addPage(last.result.continueCursor);
    }

    /** Every loaded document, in page order, each once. */
    function documents() {
      const seen = new Set();
      const docs = [];
      for (const page of state.pages) {
        for (const doc of (page.result && page.result.page) || []) {
          if (seen.has(doc._id)) continue;
          seen.add(doc._id);
          docs.push(doc);
        }
      }
      return docs;
    }

    /** `_id` first, `_creationTime` last, the rest in order of first appearance. */
    function columns(docs) {
      const names = [];
      for (const doc of docs) {
        for (const key of Object.keys(doc)) {
          if (key !== "_id" && key !== "_creationTime" && !names.includes(key)) names.push(key);
        }
      }
      return ["_id", ...names, "_creationTime"];
    }

    function renderDocuments() {
      const errors = state.pages.map((p) => p.error).filter(Boolean);
      showError(queryError, errors.join("\n"));
      if (state.table === null) {
        fill(docsBox, el("p", { class: "muted", text: "Choose a table on the left to see its documents." }));
        fill(footer);
        return;
      }
      const loading = state.pages.some((p) => p.result === null && p.error === null);
      const docs = documents();
      if (docs.length === 0) {
        fill(docsBox, el("p", { class: "muted", testid: "documents-empty", text: loading ? "Loading…" : "No documents." }));
      } else {
        fill(docsBox, documentsTable(docs));
      }
      const last = state.pages[state.pages.length - 1];
      const more = last && last.result && !last.result.isDone;
      fill(
        footer,
        el("span", { class: "muted", testid: "documents-count", text: `${docs.length} document${docs.length === 1 ? "" : "s"} shown` }),
        more ? el("button", { type: "button", testid: "load-more", text: "Load more", onclick: loadMore }) : null,
      );
      refreshEditorFromServer(docs);
    }

    function documentsTable(docs) {
      const cols = columns(docs);
      const previous = state.lastJson;
      state.lastJson = new Map();
      const rows = docs.map((doc) => {
        const json = JSON.stringify(doc);
        state.lastJson.set(doc._id, json);
        const changed = previous.size > 0 && previous.get(doc._id) !== json;
        const classes = ["doc-row"];
        if (changed) classes.push("changed");
        if (state.editing && state.editing.id === doc._id) classes.push("selected");
        return el(
          "tr",
          { class: classes.join(" "), testid: "doc-row", "data-id": doc._id, onclick: () => openEdit(doc) },
          cols.map((col) => {
            const value = doc[col];
            const text = col === "_creationTime" && typeof value === "number" ? formatTime(value) : cellText(value);
            return el("td", {
              "data-field": col,
              class: value === undefined ? "absent" : typeof value === "string" ? "" : "json",
              title: text,
              text,
            });
          }),
        );
      });
      return el(
        "table",
        { class: "grid", testid: "documents-table" },
        el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))),
        el("tbody", {}, rows),
      );
    }

    // -- the editor ------------------------------------------------------------------

    function openEdit(doc) {
      const text = prettyJson(doc);
      state.editing = { mode: "edit", id: doc._id, originalText: text };
      renderEditor(`Document ${doc._id}`, text);
      renderDocuments();
    }

    function openInsert() {
      const info = tableInfo(state.table);
      state.editing = { mode: "insert", id: null, originalText: "{\n  \n}" };
      renderEditor(`New document in ${state.table}`, state.editing.originalText, info && info.validator);
      renderDocuments();
    }

    function closeEditor() {
      state.editing = null;
      editor.hidden = true;
      fill(editor);
    }

    function renderEditor(title, text, validator) {
      editor.hidden = false;
      const textarea = el("textarea", { class: "code", testid: "doc-editor", spellcheck: "false", rows: 18 });
      textarea.value = text;
      const deleteButton = state.editing.mode === "edit"
        ? el("button", { type: "button", class: "danger", testid: "doc-delete", text: "Delete", onclick: onDelete })
        : null;
      fill(
        editor,
        el("div", { class: "editor-head" },
          el("h3", { testid: "doc-editor-title", text: title }),
          el("button", { type: "button", class: "ghost", testid: "doc-close", text: "Close", onclick: () => { closeEditor(); renderDocuments(); } }),
        ),
        validator ? el("details", {}, el("summary", { text: "Schema" }), el("pre", { class: "code small", text: validator })) : null,
        textarea,
        el("div", { class: "notice", testid: "doc-notice", hidden: true }),
        el("div", { class: "error", testid: "doc-error", role: "alert", hidden: true }),
        el("div", { class: "status", testid: "doc-status" }),
        el("div", { class: "buttons" },
          el("button", { type: "button", class: "primary", testid: "doc-save", text: state.editing.mode === "edit" ? "Save" : "Insert", onclick: onSave }),
          deleteButton,
        ),
      );
    }

    function editorPart(testid) {
      return editor.querySelector(`[data-testid="${testid}"]`);
    }

    function setEditorMessage(error, status) {
      showError(editorPart("doc-error"), error);
      editorPart("doc-status").textContent = status || "";
    }

    /** A live change to the open document shows in the editor unless it has unsaved edits. */
    function refreshEditorFromServer(docs) {
      if (!state.editing || state.editing.mode !== "edit") return;
      const doc = docs.find((d) => d._id === state.editing.id);
      if (!doc) return; // on a page not loaded, or deleted: the editor keeps what it has
      const text = prettyJson(doc);
      if (text === state.editing.originalText) return;
      const textarea = editorPart("doc-editor");
      const notice = editorPart("doc-notice");
      if (textarea.value === state.editing.originalText) {
        textarea.value = text;
        state.editing.originalText = text;
        notice.hidden = true;
      } else {
        notice.textContent = "This document changed on the server since you started editing; saving overwrites it.";
        notice.hidden = false;
      }
    }

    async function onSave() {
      const editing = state.editing;
      const textarea = editorPart("doc-editor");
      let document;
      try {
        document = parseJsonStrict(textarea.value, "The document");
        if (document === null || typeof document !== "object" || Array.isArray(document)) {
          throw new Error("A document must be a JSON object.");
        }
      } catch (e) {
        setEditorMessage(e.message);
        return;
      }
      setEditorMessage(null, "Saving…");
      try {
        if (editing.mode === "edit") {
          await session.client.mutation("_system/data:replace", { id: editing.id, document });
          if (state.editing === editing) {
            editing.originalText = textarea.value;
            setEditorMessage(null, "Saved.");
          }
        } else {
          const id = await session.client.mutation("_system/data:insert", { table: state.table, document });
          if (state.editing === editing) {
            state.editing = { mode: "edit", id, originalText: textarea.value };
            renderEditor(`Document ${id}`, textarea.value);
            setEditorMessage(null, `Inserted ${id}.`);
            renderDocuments();
          }
        }
      } catch (e) {
        if (state.editing === editing) setEditorMessage(e.message);
      }
    }

    /** Delete asks once more in place (no browser dialog), then deletes. */
    async function onDelete(event) {
      const button = event.currentTarget;
      const editing = state.editing;
      if (button.dataset.armed !== "yes") {
        button.dataset.armed = "yes";
        button.textContent = "Confirm delete";
        button.dataset.testid = "doc-delete-confirm";
        return;
      }
      setEditorMessage(null, "Deleting…");
      try {
        await session.client.mutation("_system/data:delete", { id: editing.id });
        if (state.editing === editing) {
          closeEditor();
          renderDocuments();
        }
      } catch (e) {
        if (state.editing === editing) setEditorMessage(e.message);
      }
    }

    // -- the view's life ---------------------------------------------------------------

    function onDescribe() {
      if (state.table !== null && !tableInfo(state.table)) {
        // The table is gone (a deploy dropped it).
        state.table = null;
        closeEditor();
        unsubscribeAll();
      }
      renderTables();
      renderToolbar();
      renderDocuments();
    }

    session.describeListeners.add(onDescribe);
    onDescribe();

    return {
      show() {
        state.visible = true;
        resubscribe();
      },
      hide() {
        state.visible = false;
        unsubscribeAll();
      },
    };
  }

  window.SynclineViews = window.SynclineViews || {};
  window.SynclineViews.data = createDataView;
})();
