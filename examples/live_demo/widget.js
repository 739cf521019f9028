// The docs' live demo widget: publish through the Flask API, receive through the stream
// service. The demo server is http://127.0.0.1:8001 (`make serve` starts it);
// `?demo=<url>` picks another.
function startLiveDemo(root) {
  const asked = new URLSearchParams(location.search).get("demo");
  const server = asked || root.dataset.demoUrl;
  const status = root.querySelector("[data-demo-status]");
  const log = root.querySelector("[data-demo-log]");
  const form = root.querySelector("form");
  const show = (state, text) => {
    root.dataset.state = state;
    status.textContent = text;
  };

  // --8<-- [start:receive]
  function listen() {
    const source = new EventSource(`${server}/events?channel=demo`);
    source.onopen = () =>
      show("live", "Connected: events arrive as they are published.");
    source.onerror = () =>
      show("reconnecting", "Connection lost; the browser is reconnecting.");
    source.addEventListener("message", (event) => {
      const item = document.createElement("li");
      item.textContent = `${event.lastEventId}  ${JSON.parse(event.data).text}`;
      log.prepend(item);
    });
  }
  // --8<-- [end:receive]

  // --8<-- [start:publish]
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    // A form-encoded body makes a simple request: no preflight.
    const body = new URLSearchParams(new FormData(form));
    const answer = await fetch(`${server}/api/messages`, { method: "POST", body });
    if (!answer.ok) show("error", (await answer.json()).detail);
    else form.reset();
  });
  // --8<-- [end:publish]

  // Only a running demo gets a stream: on the hosted site, say how to start it instead.
  fetch(`${server}/healthz`).then(
    (answer) =>
      answer.ok ? listen() : show("offline", "The demo server is not healthy."),
    () =>
      show("offline", "Not running here: run `make serve` in a clone to try it live."),
  );
}

document.querySelectorAll("[data-live-demo]").forEach(startLiveDemo);
