// The page's half: open the stream the API hands out (examples/client/stream.js, served
// beside this file), show each notification, and say why if the stream stops for good.

// --8<-- [start:connect]
import { fromApi, openStream } from "./stream.js";

const list = document.getElementById("events");
const show = (text) => {
  const item = document.createElement("li");
  item.textContent = text;
  list.append(item);
};

export const stream = openStream({
  getUrl: fromApi("/stream-token"), // a 401 or 403 from the API stops it
  onEvent: (event) => show(JSON.parse(event.data).text),
  // Notifications older than the retained history are gone: say so. A page that shows
  // state (a list, a count) fetches it again from the API here instead.
  onReset: () => show("(older notifications are no longer available)"),
  onError: (error) => {
    const status = document.getElementById("status");
    status.textContent = `Live updates stopped: ${error.message}`;
  },
  remember: "notifications", // a reload resumes after the last notification shown
});
// --8<-- [end:connect]
