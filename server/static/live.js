// Live job progress for the pages: follows each element with data-events through server-sent events.
// Progress lines are read as server/job_view.py reads them: "stage N/M ..." gives a stage and a percentage.
// Values are written with textContent only, so a progress line can never become markup.
(function () {
  "use strict";
  var COUNT = /(\d+)\/(\d+)/;
  var MAX_STREAMS = 4; // browsers allow six connections per host; leave room for navigation

  function parts(text) {
    text = (text || "").trim();
    var match = COUNT.exec(text);
    if (!match) return { stage: text, percent: null };
    var done = parseInt(match[1], 10), total = parseInt(match[2], 10);
    var stage = text.slice(0, match.index).replace(/[\s:]+$/, "") || text;
    return { stage: stage, percent: total ? Math.min(100, Math.round((100 * done) / total)) : null };
  }

  function each(root, field, fn) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach(fn);
  }

  function setState(root, state) {
    each(root, "state-cell", function (cell) {
      var badge = cell.querySelector(".badge");
      if (badge) {
        badge.className = "badge status-" + state;
        badge.textContent = state;
      }
    });
  }

  // As server/page_format.py writes times: "2026-11-30 02:35:12 UTC".
  function when(iso) {
    if (!iso) return "—";
    if (!/(Z|[+-]\d\d:\d\d)$/.test(iso)) iso += "Z"; // the registry's times are UTC
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "—";
    return d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  var FINISHED = ["succeeded", "failed", "cancelled"];

  // Seconds as server/page_format.py writes them: "0.42 s", "12.3 s", "3 min 5 s".
  function seconds(value) {
    if (value >= 120) return Math.floor(value / 60) + " min " + Math.floor(value % 60) + " s";
    return Number(value.toPrecision(3)) + " s";
  }

  // The stage timeline, rebuilt from the job's stages as server/job_view.py lays it out.
  function timeline(root, job) {
    var stages = (job.stages || []).filter(function (s) { return s && s.stage && !isNaN(new Date(s.at)); });
    each(root, "timeline", function (list) {
      while (list.firstChild) list.removeChild(list.firstChild);
      stages.forEach(function (s, i) {
        var item = document.createElement("li");
        var name = document.createElement("span");
        name.className = "stage-name";
        name.textContent = s.stage;
        var at = document.createElement("time");
        at.dateTime = s.at;
        at.textContent = when(s.at).slice(11);
        var length = document.createElement("span");
        length.className = "stage-length";
        var next = stages[i + 1];
        var last = !next && FINISHED.indexOf(job.state) >= 0;
        if (next) length.textContent = seconds(Math.max(0, (new Date(next.at) - new Date(s.at)) / 1000));
        else if (!last) length.textContent = "running";
        if (last) item.className = "final";
        item.append(name, " ", at, " ", length);
        list.appendChild(item);
      });
    });
    each(root, "timeline-empty", function (el) { el.hidden = stages.length > 0; });
  }

  function update(root, job) {
    var own = String(job.id) === root.dataset.job;
    var finished = FINISHED.indexOf(job.state) >= 0;
    var p = parts(job.progress);
    if (job.state === "succeeded") p.percent = 100;
    // A finished job shows no bar, stage or percentage (a bar stuck at 15% on a failed job misleads).
    ["progress-line", "progress-text", "stage", "bar", "percent"].forEach(function (field) {
      each(root, field, function (el) { el.hidden = finished; });
    });
    each(root, "took", function (el) {
      el.hidden = !finished;
      var took = (new Date(job.finished_at) - new Date(job.started_at)) / 1000;
      el.textContent = finished && took >= 0 ? "took " + seconds(took) : "—";
    });
    if (own) {
      setState(root, job.state);
      timeline(root, job);
      // What only a live job offers (the cancel line) goes when it ends.
      if (finished) {
        document.querySelectorAll("[data-until-finished]").forEach(function (el) { el.hidden = true; });
      }
    } else {
      each(root, "following", function (el) { el.textContent = "then " + job.kind + " job " + job.id + ": " + job.state; });
    }
    each(root, "stage", function (el) { el.textContent = (own ? "" : job.kind + ": ") + (p.stage || job.state); });
    each(root, "percent", function (el) { el.textContent = p.percent === null ? "" : p.percent + "%"; });
    each(root, "bar", function (el) {
      if (p.percent === null) el.removeAttribute("value");
      else el.value = p.percent;
      el.textContent = p.percent === null ? "" : String(p.percent);
    });
    each(root, "progress", function (el) { el.textContent = job.progress || "—"; });
    each(root, "error", function (el) {
      el.textContent = job.error || "";
      el.hidden = !job.error;
    });
    if (own) {
      each(root, "attempts", function (el) { el.textContent = String(job.attempts); });
      each(root, "worker", function (el) { el.textContent = job.worker || "—"; });
      each(root, "started_at", function (el) { el.textContent = when(job.started_at); });
      each(root, "finished_at", function (el) { el.textContent = when(job.finished_at); });
    }
    root.dataset.state = job.state;
  }

  function follow(root) {
    var source = new EventSource(root.dataset.events);
    root.dataset.live = "open";
    source.addEventListener("job", function (event) { update(root, JSON.parse(event.data)); });
    source.addEventListener("end", function () {
      source.close();
      root.dataset.live = "ended";
    });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself; a closed one (signed out, gone) stays closed.
      if (source.readyState === EventSource.CLOSED) root.dataset.live = "closed";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-events]");
    for (var i = 0; i < live.length && i < MAX_STREAMS; i++) follow(live[i]);
  });
})();
