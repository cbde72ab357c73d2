// Syncline dashboard: the Functions, Logs, Schedules, Deployment and Health views.
// Each view is a factory (session, root) -> {show, hide}; a view holds live
// subscriptions only while it is shown.
"use strict";

(function () {
  const { runFunction } = window.SynclineSync;
  const { el, fill, prettyJson, cellText, formatTime, formatAgo, formatNumber, parseJsonStrict, debounce, select, showError } =
    window.SynclineUi;
  const LOG_LEVELS = ["DEBUG", "INFO", "LOG", "WARN", "ERROR"];
  const JOB_STATES = ["pending", "inProgress", "success", "failed", "canceled"];
  // The most the system queries return at once.
  const LOG_LIMIT = 200;
  const JOB_LIMIT = 200;

  /**
   * A subscription that is (re)made on demand and dropped on hide: the common
   * shape of every view below. render(value) and renderError(message) draw it.
   */
  function liveQuery(session, udfPath, render, renderError) {
    let unsubscribe = null;
    return {
      start(args) {
        this.stop();
        unsubscribe = session.client.subscribe(udfPath, args, render, renderError);
      },
      stop() {
        if (unsubscribe) unsubscribe();
        unsubscribe = null;
      },
    };
  }

  function errorBox(testid) {
    return el("div", { class: "error", testid, role: "alert", hidden: true });
  }

  function badge(text, kind) {
    return el("span", { class: `badge ${kind || ""}`, text });
  }

  // -- Functions ----------------------------------------------------------------------

  function createFunctionsView(session, root) {
    let selected = null; // path
    const filter = el("input", { type: "search", placeholder: "Filter functions", testid: "fn-filter", oninput: () => renderList() });
    const list = el("ul", { class: "list", testid: "fn-list" });
    const detail = el("div", { class: "panel fn-detail", testid: "fn-detail" });
    fill(
      root,
      el("div", { class: "split" },
        el("div", { class: "panel list-panel" }, el("h2", { text: "Functions" }), filter, list),
        detail,
      ),
    );

    function functions() {
      return (session.describe && session.describe.functions) || [];
    }

    function renderList() {
      const needle = filter.value.trim().toLowerCase();
      const shown = functions().filter((f) => f.path.toLowerCase().includes(needle));
      fill(
        list,
        shown.length === 0 ? el("li", { class: "muted", text: session.describe ? "No functions." : "Loading…" }) : null,
        shown.map((f) =>
          el("li", {},
            el("button", {
              type: "button",
              class: f.path === selected ? "list-item active" : "list-item",
              testid: "fn-item",
              "data-path": f.path,
              onclick: () => choose(f.path),
            },
            el("span", { class: "mono", text: f.path }),
            badge(f.kind, `kind-${f.kind}`),
            f.visibility === "internal" ? badge("internal", "internal") : null),
          ),
        ),
      );
    }

    function choose(path) {
      selected = path;
      renderList();
      renderDetail();
    }

    function renderDetail() {
      const fn = functions().find((f) => f.path === selected);
      if (!fn) {
        fill(detail, el("p", { class: "muted", text: "Select a function to run it." }));
        return;
      }
      const args = el("textarea", { class: "code", testid: "fn-args", rows: 8, spellcheck: "false" });
      args.value = "{}";
      const result = el("div", { class: "result", testid: "fn-result" });
      const run = el("button", { type: "button", class: "primary", testid: "fn-run", text: "Run" });
      run.addEventListener("click", () => runSelected(fn, args, result, run));
      fill(
        detail,
        el("h2", { class: "mono", testid: "fn-path", text: fn.path }),
        el("div", { class: "meta" }, badge(fn.kind, `kind-${fn.kind}`), badge(fn.visibility, fn.visibility)),
        el("h3", { text: "Arguments validator" }),
        el("pre", { class: "code small", testid: "fn-validator", text: fn.args || "(none: any arguments)" }),
        el("h3", { text: "Arguments (Convex JSON)" }),
        args,
        el("div", { class: "buttons" }, run),
        result,
      );
    }

    async function runSelected(fn, argsBox, result, button) {
      let args;
      try {
        args = parseJsonStrict(argsBox.value, "The arguments");
      } catch (e) {
        fill(result, el("div", { class: "error", testid: "fn-error", text: e.message }));
        return;
      }
      button.disabled = true;
      fill(result, el("p", { class: "muted", text: "Running…" }));
      const started = performance.now();
      let outcome;
      try {
        outcome = await runFunction(session.adminKey, fn.path, args);
      } catch (e) {
        outcome = { ok: false, message: `Could not reach the server: ${e.message}`, logLines: [] };
      }
      const millis = performance.now() - started;
      button.disabled = false;
      fill(
        result,
        el("div", { class: `outcome ${outcome.ok ? "ok" : "failed"}`, testid: "fn-outcome" },
          outcome.ok ? "Success" : "Failed", ` · ${formatNumber(millis, 0)} ms`),
        outcome.ok
          ? el("pre", { class: "code", testid: "fn-value", text: prettyJson(outcome.value) })
          : el("pre", { class: "code error-text", testid: "fn-error", text: outcome.message }),
        el("h3", { text: "Log lines" }),
        outcome.logLines.length
          ? el("pre", { class: "code logs", testid: "fn-logs", text: outcome.logLines.join("\n") })
          : el("p", { class: "muted", testid: "fn-logs", text: "(none)" }),
      );
    }

    session.describeListeners.add(() => {
      renderList();
      // Keep a run's result on screen: only redraw when the function vanished.
      if (selected && !functions().some((f) => f.path === selected)) renderDetail();
    });
    renderList();
    renderDetail();
    return { show() {}, hide() {} };
  }

  // -- Logs -----------------------------------------------------------------------------

  function createLogsView(session, root) {
    const options = { path: "", level: "INFO" };
    const paths = el("datalist", { id: "log-paths" });
    const pathInput = el("input", {
      type: "search",
      testid: "logs-path",
      placeholder: "All functions",
      list: "log-paths",
      oninput: debounce(() => {
        options.path = pathInput.value.trim();
        restart();
      }, 250),
    });
    const level = select("logs-level", LOG_LEVELS.map((l) => [l, `${l} and above`]), options.level, (value) => {
      options.level = value;
      restart();
    });
    const error = errorBox("logs-error");
    const rows = el("tbody", {});
    const scroller = el("div", { class: "table-scroll logs-scroll" },
      el("table", { class: "grid logs", testid: "logs-table" },
        el("thead", {}, el("tr", {}, ["Time", "Level", "Function", "Message"].map((h) => el("th", { text: h })))),
        rows,
      ),
    );
    const count = el("span", { class: "muted", testid: "logs-count" });
    fill(
      root,
      el("div", { class: "panel" },
        el("div", { class: "toolbar" }, el("h2", { text: "Logs" }), el("label", {}, "Function ", pathInput, paths),
          el("label", {}, "Level ", level), el("div", { class: "spacer" }), count),
        error,
        scroller,
      ),
    );

    const live = liveQuery(session, "_system/logs:tail", render, (message) => showError(error, message));

    function restart() {
      const args = { level: options.level, limit: LOG_LIMIT };
      if (options.path) args.path = options.path;
      live.start(args);
    }

    function render(entries) {
      showError(error, "");
      // Follow the tail only if the reader is already at the bottom.
      const atBottom = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 4;
      fill(
        rows,
        entries.map((entry) =>
          el("tr", { testid: "log-row", "data-level": entry.level },
            el("td", { class: "nowrap", text: formatTime(entry.time) }),
            el("td", {}, badge(entry.level, `level-${entry.level}`)),
            el("td", { class: "mono nowrap", text: `${entry.path}${entry.kind ? ` (${entry.kind})` : ""}` }),
            el("td", { class: "mono message", text: entry.message }),
          ),
        ),
      );
      count.textContent = `${entries.length} line${entries.length === 1 ? "" : "s"}`;
      if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    }

    session.describeListeners.add((describe) => {
      fill(paths, (describe.functions || []).map((f) => el("option", { value: f.path })));
    });
    return { show: restart, hide: () => live.stop() };
  }

  // -- Schedules -----------------------------------------------------------------------

  function createSchedulesView(session, root) {
    let stateFilter = "";
    const jobsError = errorBox("jobs-error");
    const jobsBox = el("div", { class: "table-scroll", testid: "jobs" });
    const cronsError = errorBox("crons-error");
    const cronsBox = el("div", { class: "table-scroll", testid: "crons" });
    const stateSelect = select("jobs-state", [["", "all states"], ...JOB_STATES.map((s) => [s, s])], stateFilter, (value) => {
      stateFilter = value;
      startJobs();
    });
    fill(
      root,
      el("div", { class: "panel" },
        el("div", { class: "toolbar" }, el("h2", { text: "Scheduled functions" }), el("label", {}, "State ", stateSelect)),
        jobsError, jobsBox),
      el("div", { class: "panel" }, el("div", { class: "toolbar" }, el("h2", { text: "Cron jobs" })), cronsError, cronsBox),
    );

    const jobs = liveQuery(session, "_system/jobs:list", renderJobs, (m) => showError(jobsError, m));
    const crons = liveQuery(session, "_system/jobs:crons", renderCrons, (m) => showError(cronsError, m));

    function startJobs() {
      const args = { limit: JOB_LIMIT };
      if (stateFilter) args.state = stateFilter;
      jobs.start(args);
    }

    async function cancel(job, button) {
      button.disabled = true;
      try {
        await session.client.mutation("_system/jobs:cancel", { id: job._id });
        showError(jobsError, "");
      } catch (e) {
        button.disabled = false;
        showError(jobsError, `Could not cancel ${job.name}: ${e.message}`);
      }
    }

    function renderJobs(list) {
      showError(jobsError, "");
      if (list.length === 0) {
        fill(jobsBox, el("p", { class: "muted", text: "No scheduled functions." }));
        return;
      }
      fill(jobsBox, el("table", { class: "grid", testid: "jobs-table" },
        el("thead", {}, el("tr", {}, ["Function", "Arguments", "Scheduled for", "Completed", "State", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, list.map((job) => {
          const kind = (job.state && job.state.kind) || "unknown";
          const cancelButton = kind === "pending"
            ? el("button", { type: "button", class: "small danger", testid: "job-cancel", text: "Cancel" })
            : null;
          if (cancelButton) cancelButton.addEventListener("click", () => cancel(job, cancelButton));
          return el("tr", { testid: "job-row", "data-id": job._id, "data-state": kind },
            el("td", { class: "mono", text: job.name }),
            el("td", { class: "mono json", text: cellText(job.args) }),
            el("td", { class: "nowrap", text: formatTime(job.scheduledTime) }),
            el("td", { class: "nowrap", text: job.completedTime ? formatTime(job.completedTime) : "" }),
            el("td", {}, badge(kind, `state-${kind}`), job.state && job.state.error ? el("div", { class: "error-text", text: job.state.error }) : null),
            el("td", {}, cancelButton),
          );
        })),
      ));
    }

    function renderCrons(list) {
      showError(cronsError, "");
      if (list.length === 0) {
        fill(cronsBox, el("p", { class: "muted", text: "No cron jobs." }));
        return;
      }
      fill(cronsBox, el("table", { class: "grid", testid: "crons-table" },
        el("thead", {}, el("tr", {}, ["Name", "Function", "Arguments", "Schedule", "Next run"].map((h) => el("th", { text: h })))),
        el("tbody", {}, list.map((cron) =>
          el("tr", { testid: "cron-row" },
            el("td", { text: cron.name }),
            el("td", { class: "mono", text: cron.function }),
            el("td", { class: "mono json", text: cellText(cron.args) }),
            el("td", { class: "mono", text: cellText(cron.schedule) }),
            el("td", { class: "nowrap", text: formatTime(cron.nextRunTime) }),
          ))),
      ));
    }

    return {
      show() {
        startJobs();
        crons.start({});
      },
      hide() {
        jobs.stop();
        crons.stop();
      },
    };
  }

  // -- Deployment ---------------------------------------------------------------------

  function createDeploymentView(session, root) {
    function render(describe) {
      if (!describe) {
        fill(root, el("div", { class: "panel" }, el("p", { class: "muted", text: "Loading…" })));
        return;
      }
      fill(
        root,
        el("div", { class: "panel" },
          el("h2", { text: "Deployment" }),
          el("dl", { class: "facts" },
            el("dt", { text: "Version" }), el("dd", { class: "mono", testid: "deployment-version", text: String(describe.version) }),
            el("dt", { text: "Mode" }), el("dd", { testid: "deployment-mode", text: describe.mode }),
            el("dt", { text: "Functions" }), el("dd", { text: String((describe.functions || []).length) }),
          ),
        ),
        el("div", { class: "panel" },
          el("h2", { text: "Versions" }),
          renderVersions(describe.versions || []),
        ),
        el("div", { class: "panel" },
          el("h2", { text: "Schema" }),
          el("div", { testid: "schema-tables" }, (describe.tables || []).map(renderTable)),
        ),
      );
    }

    // Newest first; a cluster's nodes run version 0 (the app they started with)
    // until the first `syncline deploy`, which is not listed.
    function renderVersions(versions) {
      if (!versions.length) {
        return el("p", { class: "muted", text: "Nothing deployed yet: the nodes run the app they were started with." });
      }
      return el("table", { class: "grid compact", testid: "deployment-versions" },
        el("thead", {}, el("tr", {},
          el("th", { text: "Version" }), el("th", { text: "Deployed" }), el("th", { text: "Functions" }),
          el("th", { text: "Tables" }), el("th", { text: "Sources" }))),
        el("tbody", {}, versions.map((version) =>
          el("tr", { testid: "deployment-version-row" },
            el("td", { class: "mono", text: String(version.version) }),
            el("td", { text: formatTime(version.deployedAt) }),
            el("td", { text: String(version.functions) }),
            el("td", { text: String(version.tables) }),
            el("td", { class: "mono", title: version.digest, text: version.digest.slice(0, 12) })))),
      );
    }

    function renderTable(table) {
      return el("div", { class: "schema-table", testid: "schema-table", "data-table": table.name },
        el("h3", { class: "mono" }, table.name, table.system ? badge("system") : null),
        table.validator
          ? el("pre", { class: "code small", text: table.validator })
          : el("p", { class: "muted", text: "No validator: any document." }),
        el("table", { class: "grid compact" },
          el("thead", {}, el("tr", {}, el("th", { text: "Index" }), el("th", { text: "Fields" }))),
          el("tbody", {}, (table.indexes || []).map((index) =>
            el("tr", {}, el("td", { class: "mono", text: index.name }), el("td", { class: "mono", text: index.fields.join(", ") })))),
        ),
      );
    }

    session.describeListeners.add(render);
    render(session.describe);
    return { show() {}, hide() {} };
  }

  // -- Health -----------------------------------------------------------------------------

  function createHealthView(session, root) {
    const error = errorBox("health-error");
    const body = el("div", { testid: "health" }, el("p", { class: "muted", text: "Loading…" }));
    fill(root, error, body);
    let last = null;
    let ticker = null;

    const live = liveQuery(session, "_system/health:cluster", (health) => {
      last = health;
      showError(error, "");
      render();
    }, (message) => showError(error, message));

    function stat(label, testid, value, hint) {
      return el("div", { class: "stat" }, el("div", { class: "stat-label", text: label }),
        el("div", { class: "stat-value", testid, text: value }), hint ? el("div", { class: "muted small", text: hint }) : null);
    }

    function lagText(seconds) {
      if (seconds === null || seconds === undefined) return "—";
      return seconds < 1 ? `${formatNumber(seconds * 1000, 1)} ms` : `${formatNumber(seconds, 2)} s`;
    }

    function render() {
      const h = last;
      if (!h) return;
      fill(
        body,
        el("div", { class: "stats" },
          stat("Mode", "health-mode", h.mode),
          stat("Commits / s", "health-commits", formatNumber(h.commitsPerSecond, 1)),
          stat("Last commit", "health-last-commit", formatAgo(h.lastCommitTime), h.lastCommitTime ? formatTime(h.lastCommitTime) : null),
          stat("Updated", "health-updated", formatAgo(h.updatedAt)),
        ),
        el("div", { class: "panel" }, el("h2", { text: "Regions" }),
          el("div", { testid: "health-regions" }, (h.regions || []).map(renderRegion))),
        el("div", { class: "panel" }, el("h2", { text: "Leaders" }), renderLeaders(h)),
      );
    }

    function renderLeaders(h) {
      const leaders = h.leaders || [];
      if (leaders.length === 0) {
        const text = h.mode === "embedded"
          ? "No elected roles: in embedded mode one process does everything."
          : "No leaders reported.";
        return el("p", { class: "muted", testid: "health-no-leaders", text });
      }
      return el("table", { class: "grid compact", testid: "health-leaders" },
        el("thead", {}, el("tr", {}, ["Role", "Leader", "Address", "Standbys"].map((t) => el("th", { text: t })))),
        el("tbody", {}, leaders.map((leader) =>
          el("tr", { testid: "leader-row", "data-role": leader.role },
            el("td", { text: leader.role }),
            // No leader means nobody is doing this role's work right now.
            el("td", { class: "mono" }, leader.id ? leader.id : badge("none", "bad")),
            el("td", { class: "mono", text: leader.address || "—" }),
            el("td", { text: String(leader.standbys) }),
          ))),
      );
    }

    function renderRegion(region) {
      const lag = region.replicationLagSeconds;
      const lagClass = lag === null || lag === undefined ? "" : lag > 5 ? "bad" : lag > 1 ? "warn" : "good";
      return el("div", { class: "region", testid: "health-region", "data-region": region.name },
        el("h3", {}, region.name, region.primary ? badge("primary", "good") : badge("replica"),
          el("span", { class: `lag ${lagClass}`, testid: "region-lag", text: `replication lag ${lagText(lag)}` })),
        el("table", { class: "grid compact" },
          el("thead", {}, el("tr", {}, ["Node", "Role", "Address", "Sessions"].map((t) => el("th", { text: t })))),
          el("tbody", {}, (region.nodes || []).map((node) =>
            el("tr", { testid: "node-row" },
              el("td", { class: "mono", text: node.id }),
              el("td", { text: node.role }),
              el("td", { class: "mono", text: node.address || "—" }),
              el("td", { text: String(node.sessions) }),
            ))),
        ),
      );
    }

    return {
      show() {
        live.start({});
        // "3.2 s ago" goes stale between updates: redraw it every second.
        ticker = setInterval(render, 1000);
      },
      hide() {
        live.stop();
        clearInterval(ticker);
      },
    };
  }

  window.SynclineViews = Object.assign(window.SynclineViews || {}, {
    functions: createFunctionsView,
    logs: createLogsView,
    schedules: createSchedulesView,
    deployment: createDeploymentView,
    health: createHealthView,
  });
})();
