// Airlock passkeys: the browser half of the WebAuthn ceremonies. Served from the
// provider's own origin (CSP script-src 'self'); talks to nothing else. Without this
// script the login page is the transfer-code form alone.
"use strict";
(function () {
  function b64uToBuf(s) {
    var b = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b.length % 4) b += "=";
    var bin = atob(b), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function say(text) {
    var s = document.getElementById("passkey-status");
    if (s) s.textContent = text;
  }
  function fields(form, names) {
    var p = new URLSearchParams();
    names.forEach(function (n) {
      if (form.elements[n] && form.elements[n].value) p.append(n, form.elements[n].value);
    });
    return p;
  }
  function options(form, names) {
    return fetch(form.dataset.options, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: fields(form, names).toString()
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error_description || "The sign-in service refused.");
        return j;
      });
    });
  }
  function send(form, ceremony, cred) {
    form.elements.ceremony.value = ceremony;
    form.elements.credential.value = JSON.stringify(cred);
    form.submit();
  }

  function signIn(form, mediation, abort) {
    return options(form, ["txn", "csrf", "username"]).then(function (j) {
      var o = j.options.publicKey;
      o.challenge = b64uToBuf(o.challenge);
      (o.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      var req = { publicKey: o };
      if (mediation) req.mediation = mediation;
      if (abort) req.signal = abort.signal;
      return navigator.credentials.get(req).then(function (c) {
        if (!c) throw new Error("No passkey was chosen.");
        send(form, j.ceremony, {
          id: c.id,
          rawId: bufToB64u(c.rawId),
          type: c.type,
          response: {
            authenticatorData: bufToB64u(c.response.authenticatorData),
            clientDataJSON: bufToB64u(c.response.clientDataJSON),
            signature: bufToB64u(c.response.signature),
            userHandle: c.response.userHandle ? bufToB64u(c.response.userHandle) : null
          },
          extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
        });
      });
    });
  }

  function enrol(form) {
    return options(form, ["csrf", "name"]).then(function (j) {
      var o = j.options.publicKey;
      o.challenge = b64uToBuf(o.challenge);
      o.user.id = b64uToBuf(o.user.id);
      (o.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      return navigator.credentials.create({ publicKey: o }).then(function (c) {
        send(form, j.ceremony, {
          id: c.id,
          rawId: bufToB64u(c.rawId),
          type: c.type,
          response: {
            attestationObject: bufToB64u(c.response.attestationObject),
            clientDataJSON: bufToB64u(c.response.clientDataJSON),
            transports: c.response.getTransports ? c.response.getTransports() : []
          },
          extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
        });
      });
    });
  }

  function failed(e) {
    say((e && e.name === "NotAllowedError")
      ? "The passkey request was cancelled or timed out. Try again, or use a transfer code."
      : (e && e.message) || "The passkey did not work. Try again, or use a transfer code.");
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    var signinForm = document.getElementById("passkey-form");
    if (signinForm) {
      document.getElementById("passkey").hidden = false;
      var pending = null;
      // Conditional UI: offer passkeys in the name field's autofill where the browser can
      // (not right after a failed attempt: the person reads why first).
      var failedBefore = document.querySelector('.error[role="alert"]');
      if (!failedBefore && PublicKeyCredential.isConditionalMediationAvailable) {
        PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
          if (!ok) return;
          pending = new AbortController();
          signIn(signinForm, "conditional", pending).catch(function () {});
        });
      }
      signinForm.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (pending) { pending.abort(); pending = null; }
        say("Follow your browser's prompt to use your passkey.");
        signIn(signinForm, null, null).catch(failed);
      });
    }
    var enrolForm = document.getElementById("enrol-form");
    if (enrolForm) {
      enrolForm.hidden = false;
      enrolForm.addEventListener("submit", function (ev) {
        ev.preventDefault();
        say("Follow your browser's prompt to create the passkey.");
        enrol(enrolForm).catch(failed);
      });
    }
  });
})();
