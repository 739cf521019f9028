// The browser's side of the chat: a token from the API (same origin, session cookie),
// a WebSocket to the service with the token in its subprotocol list (not in the URL, so
// not in access logs), and on any close a reconnect with backoff that resumes after the
// last id.

// --8<-- [start:connect]
function openChat(room, { onMessage, onStatus }) {
  const positions = {}; // channel -> id of the last event seen: where to resume
  let socket = null;
  let attempt = 0;

  async function connect() {
    onStatus("connecting");
    let grant;
    try {
      const response = await fetch(`/chat-token?room=${encodeURIComponent(room)}`, {
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`no chat token: ${response.status}`);
      grant = await response.json();
    } catch (error) {
      return retry();
    }
    const cursor = Object.entries(positions).map(([channel, id]) => `${channel}=${id}`);
    const resume = cursor.length
      ? `&last_event_id=${encodeURIComponent(cursor.join(","))}`
      : "";
    const protocols = ["sidestream.v1", `bearer.${grant.token}`];
    socket = new WebSocket(grant.url + resume, protocols);
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "ready") {
        Object.assign(positions, frame.positions);
        attempt = 0;
        onStatus("connected");
      } else if (frame.type === "event") {
        positions[frame.channel] = frame.id;
        if (frame.event === "message") onMessage(JSON.parse(frame.data));
      } else if (frame.type === "error") {
        console.warn("chat:", frame.reason);
      }
    };
    // 1001 shutdown, 4001 token expired, 4008 too slow, 1006 refused or network:
    // all reconnect.
    socket.onclose = () => retry();
  }

  function retry() {
    onStatus("reconnecting");
    const delay = Math.min(10_000, 250 * 2 ** attempt++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  }

  connect();
  return {
    send(text) {
      if (socket?.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify({ channel: `room:${room}`, data: text }));
      return true;
    },
  };
}
// --8<-- [end:connect]

const room = new URLSearchParams(location.search).get("room") || "lobby";
const chat = openChat(room, {
  onMessage: ({ from, text }) => {
    const item = document.createElement("li");
    item.textContent = `${from}: ${text}`;
    document.getElementById("messages").append(item);
  },
  onStatus: (status) => (document.getElementById("status").textContent = status),
});
document.getElementById("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (chat.send(input.value)) input.value = "";
});
