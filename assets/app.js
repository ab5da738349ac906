/* Vestibule pages: optional progressive enhancement. Every page works without this
 * script; it adds a "copy key" button on the setup page, a countdown to the next
 * code on the code forms, and the security-key ceremonies (whose sections stay
 * hidden without it, leaving the code forms). Texts come from data- attributes (already translated). */
(function () {
  "use strict";

  function copyButton() {
    var box = document.querySelector(".secret[data-copy-label]");
    var code = document.getElementById("totp-secret");
    if (!box || !code || !navigator.clipboard) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary copy";
    button.textContent = box.getAttribute("data-copy-label");
    var status = document.createElement("span");
    status.className = "copied";
    status.setAttribute("role", "status");
    button.addEventListener("click", function () {
      var key = code.textContent.replace(/\s+/g, "");
      navigator.clipboard.writeText(key).then(function () {
        status.textContent = box.getAttribute("data-copied-label");
      });
    });
    box.appendChild(document.createTextNode(" "));
    box.appendChild(button);
    box.appendChild(status);
  }

  function countdown() {
    var form = document.querySelector("form[data-period][data-countdown]");
    if (!form) { return; }
    var period = parseInt(form.getAttribute("data-period"), 10);
    var template = form.getAttribute("data-countdown");
    if (!(period > 0) || !template) { return; }
    var out = document.createElement("p");
    out.className = "countdown";
    out.setAttribute("aria-hidden", "true");
    var button = form.querySelector("button[type=submit]");
    form.insertBefore(out, button);
    function tick() {
      var now = Math.floor(Date.now() / 1000);
      var left = period - (now % period);
      out.textContent = template.replace("{0}", String(left));
    }
    tick();
    window.setInterval(tick, 1000);
  }

  /* Security keys and passkeys (SPEC §10). Each ceremony section is hidden in the
   * page and shown here only when the browser has WebAuthn; it talks JSON to
   * P/webauthn/…/start and …/finish (the CSRF token travels in the body, as a form's
   * does) and follows the redirect the server answers with. */
  function b64urlToBytes(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bytesToB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.error || String(r.status)); }
        return j;
      });
    });
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = b64urlToBytes(pk.challenge);
    pk.user.id = b64urlToBytes(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBytes(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = b64urlToBytes(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = b64urlToBytes(c.id); });
    return { publicKey: pk };
  }

  function created(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type,
      response: {
        attestationObject: bytesToB64url(r.attestationObject),
        clientDataJSON: bytesToB64url(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      },
      extensions: cred.getClientExtensionResults()
    };
  }

  function asserted(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type,
      response: {
        authenticatorData: bytesToB64url(r.authenticatorData),
        clientDataJSON: bytesToB64url(r.clientDataJSON),
        signature: bytesToB64url(r.signature),
        userHandle: r.userHandle ? bytesToB64url(r.userHandle) : null
      },
      extensions: cred.getClientExtensionResults()
    };
  }

  /* One ceremony bound to a section and its button: start, ask the authenticator,
   * finish, follow the redirect; a failure is said in the section's status line. */
  function ceremony(sectionId, buttonId, create, extra) {
    var section = document.getElementById(sectionId);
    var button = document.getElementById(buttonId);
    if (!section || !button) { return; }
    if (!window.PublicKeyCredential || !navigator.credentials) { return; }
    section.hidden = false;
    var status = section.querySelector("[role=status]");
    var csrf = section.getAttribute("data-csrf");
    button.addEventListener("click", function () {
      button.disabled = true;
      status.className = "status";
      status.textContent = section.getAttribute("data-working");
      var body = extra();
      body.csrf_token = csrf;
      post(section.getAttribute("data-start"), body).then(function (started) {
        return create
          ? navigator.credentials.create(creationOptions(started.options)).then(function (c) {
              return { ceremony: started.ceremony, credential: created(c) };
            })
          : navigator.credentials.get(requestOptions(started.options)).then(function (c) {
              return { ceremony: started.ceremony, credential: asserted(c) };
            });
      }).then(function (answer) {
        var done = extra();
        done.csrf_token = csrf;
        done.ceremony = answer.ceremony;
        done.credential = answer.credential;
        return post(section.getAttribute("data-finish"), done);
      }).then(function (finished) {
        window.location.assign(finished.redirect);
      }).catch(function () {
        status.className = "status error";
        status.textContent = section.getAttribute("data-failed");
        button.disabled = false;
        button.focus();
      });
    });
  }

  function keys() {
    ceremony("webauthn-register", "webauthn-register-button", true, function () {
      var section = document.getElementById("webauthn-register");
      var name = document.getElementById("webauthn-name");
      return { name: name ? name.value : "", rd: section.getAttribute("data-rd") };
    });
    ceremony("webauthn-challenge", "webauthn-challenge-button", false, function () {
      var section = document.getElementById("webauthn-challenge");
      var remember = document.getElementById("remember_device");
      return { rd: section.getAttribute("data-rd"), remember_device: !!(remember && remember.checked) };
    });
    ceremony("webauthn-passwordless", "webauthn-passwordless-button", false, function () {
      return { rd: document.getElementById("webauthn-passwordless").getAttribute("data-rd") };
    });
  }

  copyButton();
  countdown();
  keys();
})();
