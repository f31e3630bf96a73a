// Sendit's status page: fetch the page's fragment now and then and swap it in (no reload).
// Read-only: GET requests to the same origin only.
"use strict";
(function () {
  const main = document.getElementById("content");
  const note = document.getElementById("refresh");
  const url = main && main.dataset.fragment;
  if (!url) return;
  const seconds = Number(note.dataset.seconds) || 5;
  let last = new Date();

  function said(text, stale) {
    note.textContent = text;
    note.classList.toggle("stale", stale);
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      main.innerHTML = await response.text();
      last = new Date();
      said("updated " + last.toLocaleTimeString(), false);
    } catch (err) {
      said("not updated since " + last.toLocaleTimeString() + " (" + err.message + ")", true);
    }
  }

  said("refreshing every " + seconds + " s", false);
  setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
