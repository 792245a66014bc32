// odbackupd-intake upload page: a small tus 1.0 client (creation, core PATCH, HEAD to
// resume). No build step, no inline script (the page's CSP forbids it), no third-party code.
// Each file is sent in chunks; a dropped connection or a restarted server is retried with
// backoff and resumed from the offset the server acknowledged; the upload URL is kept in
// localStorage, so even a reloaded page resumes a file chosen again.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const CHUNK = Math.max(65536, parseInt(params.get("chunk") || "", 10) || 8 * 1048576);
  const PARALLEL = 2;
  const base = new URL("files", location.href).href;
  const tokenInput = document.getElementById("token");
  const fileInput = document.getElementById("files");
  const drop = document.getElementById("drop");
  const list = document.getElementById("list");
  const message = document.getElementById("message");
  const queue = [];
  let running = 0;
  let counter = 0;

  tokenInput.value = sessionStorage.getItem("intake-token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("intake-token", tokenInput.value.trim()));

  function say(text, error) {
    message.textContent = text;
    message.className = error ? "error" : "";
  }

  function request(method, url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Tus-Resumable", "1.0.0");
      xhr.setRequestHeader("Authorization", "Bearer " + tokenInput.value.trim());
      for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("connection lost"));
      xhr.onabort = () => reject(new Error("aborted"));
      xhr.ontimeout = () => reject(new Error("timed out"));
      xhr.send(body === undefined ? null : body);
    });
  }

  class Fatal extends Error {}

  function fatal(xhr) {
    const why = (xhr.responseText || "").trim() || ("HTTP " + xhr.status);
    return new Fatal(xhr.status === 401 ? "the token was not accepted" : why);
  }

  function b64(s) {
    return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  }

  function row(file) {
    const li = document.createElement("li");
    li.id = "file-" + (counter++);
    li.dataset.state = "waiting";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    const status = document.createElement("div");
    status.className = "status";
    status.textContent = "waiting";
    li.append(name, bar, status);
    list.append(li);
    return {
      li, bar,
      set(state, text) { li.dataset.state = state; status.textContent = text; },
      progress(n) {
        bar.value = n;
        const pct = file.size ? Math.floor(100 * n / file.size) : 100;
        status.textContent = pct + " % of " + file.size.toLocaleString() + " bytes";
      },
    };
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function upload(file, ui) {
    const key = "intake:" + [file.name, file.size, file.lastModified].join(":");
    let url = localStorage.getItem(key);
    let sentAll = false;
    let failures = 0;
    for (;;) {
      try {
        let offset = 0;
        if (url) {
          const h = await request("HEAD", url);
          if (h.status === 404) {
            localStorage.removeItem(key);
            url = null;
            if (sentAll) { ui.progress(file.size); ui.set("done", "stored (its confirmation was lost)"); return; }
            continue;
          }
          if (h.status !== 200) throw h.status >= 500 ? new Error("HTTP " + h.status) : fatal(h);
          offset = parseInt(h.getResponseHeader("Upload-Offset"), 10);
        } else {
          const c = await request("POST", base, undefined, {
            "Upload-Length": String(file.size),
            "Upload-Metadata": "filename " + b64(file.name),
          });
          if (c.status !== 201) throw c.status >= 500 && c.status !== 507 ? new Error("HTTP " + c.status) : fatal(c);
          if (c.getResponseHeader("Intake-Name")) { ui.progress(file.size); ui.set("done", "stored as " + decodeURIComponent(c.getResponseHeader("Intake-Name"))); return; }
          url = new URL(c.getResponseHeader("Location"), base).href;
          localStorage.setItem(key, url);
        }
        ui.set("uploading", "uploading");
        ui.progress(offset);
        while (offset < file.size) {
          const end = Math.min(offset + CHUNK, file.size);
          const start = offset;
          const p = await request("PATCH", url, file.slice(start, end), {
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": String(start),
          }, (loaded) => ui.progress(start + loaded));
          if (p.status === 409) break; // out of step: ask for the offset again
          if (p.status !== 204) throw p.status >= 500 && p.status !== 507 ? new Error("HTTP " + p.status) : fatal(p);
          offset = parseInt(p.getResponseHeader("Upload-Offset"), 10);
          failures = 0;
          if (end === file.size) sentAll = true;
          if (offset === file.size) {
            localStorage.removeItem(key);
            ui.progress(file.size);
            ui.set("done", "stored as " + decodeURIComponent(p.getResponseHeader("Intake-Name") || file.name));
            return;
          }
        }
      } catch (e) {
        if (e instanceof Fatal) { ui.set("failed", e.message); return; }
        failures++;
        const wait = Math.min(15000, 500 * 2 ** Math.min(failures - 1, 5));
        ui.set("retrying", e.message + "; retrying in " + Math.round(wait / 1000 * 10) / 10 + " s");
        await sleep(wait);
      }
    }
  }

  function pump() {
    while (running < PARALLEL && queue.length) {
      const [file, ui] = queue.shift();
      running++;
      upload(file, ui).finally(() => { running--; pump(); });
    }
  }

  function add(files) {
    if (!tokenInput.value.trim()) { say("Enter your upload token first.", true); tokenInput.focus(); return; }
    sessionStorage.setItem("intake-token", tokenInput.value.trim());
    say("");
    for (const f of files) queue.push([f, row(f)]);
    pump();
  }

  fileInput.addEventListener("change", () => { add(Array.from(fileInput.files)); fileInput.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); add(Array.from(e.dataTransfer.files)); });
  document.getElementById("form").addEventListener("submit", (e) => e.preventDefault());
})();
