// DAEF console: optional enhancements. Every page works without this script; with it,
// timestamps show in the browser's time zone (UTC stays in the tooltip), "select all" boxes
// work, a job's page follows the job's event stream, and the overview and the newest jobs
// refresh themselves.
(function () {
  'use strict';

  // Shows each <time datetime> in local time; its title keeps the UTC value.
  function localize(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      var at = new Date(el.getAttribute('datetime'));
      if (!isNaN(at.getTime())) {
        el.textContent = at.toLocaleString();
        el.title = el.getAttribute('datetime').replace('T', ' ').replace('Z', ' UTC');
      }
    });
  }

  function wireSelectAll(root) {
    root.querySelectorAll('input[data-select-all]').forEach(function (box) {
      box.addEventListener('change', function () {
        var name = box.getAttribute('data-select-all');
        document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (other) {
          other.checked = box.checked;
        });
      });
    });
  }

  // A refresh would lose what the operator is doing: skip it while something is selected or
  // a control inside the live region has the focus.
  function busy(live) {
    return live.querySelector('input[type=checkbox]:checked') !== null ||
      live.contains(document.activeElement) && document.activeElement !== live;
  }

  function refresher(live) {
    var url = live.getAttribute('data-refresh');
    var running = false;
    return function () {
      if (running || document.hidden || busy(live)) { return; }
      running = true;
      fetch(url, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html !== null) {
            live.innerHTML = html;
            localize(live);
            wireSelectAll(live);
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { running = false; });
    };
  }

  document.addEventListener('DOMContentLoaded', function () {
    localize(document);
    wireSelectAll(document);
    var live = document.getElementById('live');
    if (!live || !live.getAttribute('data-refresh')) { return; }
    var refresh = refresher(live);
    var events = live.getAttribute('data-events');
    if (events && window.EventSource) {
      // A job page: redraw on each event of the job's stream, at most a few times a second.
      var source = new EventSource(events);
      var timer = null;
      var soon = function () {
        if (timer === null) {
          timer = setTimeout(function () { timer = null; refresh(); }, 150);
        }
      };
      source.addEventListener('job', soon);
      source.addEventListener('task', soon);
      source.addEventListener('end', function () { soon(); source.close(); });
    } else {
      // The overview and the newest jobs: there is no cluster-wide change feed (jobs arrive
      // through every replica), so these look again every two seconds while visible.
      setInterval(refresh, 2000);
    }
  });
}());
