// The browser side, for a page that knows the service's address and its channels: the
// one client (examples/client/stream.js, served beside this file) with the URL built
// here.

// --8<-- [start:client]
import { openStream } from "./stream.js";

// getToken(signal) asks your API for a short-lived token (and throws a Refused, which
// stops the stream, when the API says no). `handlers`: onEvent, onReset, onError, ...
export function openServiceStream(serviceUrl, channels, getToken, handlers) {
  return openStream({
    remember: `stream:${channels.join(",")}`, // a reload resumes each channel
    ...handlers,
    async getUrl(signal) {
      const url = new URL("/events", serviceUrl);
      for (const channel of channels) url.searchParams.append("channel", channel);
      url.searchParams.set("token", await getToken(signal));
      return url;
    },
  });
}
// --8<-- [end:client]
