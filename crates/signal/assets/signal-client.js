// Turnpike signalling client: join a room with a token, receive presence and messages, resume
// after a dropped socket (session id, resume token, last sequence number). No dependencies.
export class SignalClient extends EventTarget {
  constructor(url, token) {
    super();
    this.url = url;
    this.token = token;
    this.lastSeq = 0;
    this.session = null;
    this.resumeToken = null;
    this.closed = false;
  }
  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      const join = this.session
        ? { v: 1, type: "join", resume: { session: this.session, token: this.resumeToken, last_seq: this.lastSeq } }
        : { v: 1, type: "join", token: this.token };
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (typeof m.seq === "number") {
        if (m.seq <= this.lastSeq) return; // already seen (replay)
        this.lastSeq = m.seq;
      }
      if (m.type === "joined") {
        this.session = m.session;
        this.resumeToken = m.resume_token;
      }
      this.dispatchEvent(new CustomEvent(m.type, { detail: m }));
      this.dispatchEvent(new CustomEvent("message", { detail: m }));
    };
    ws.onclose = (ev) => {
      this.dispatchEvent(new CustomEvent("socket_closed", { detail: { code: ev.code } }));
      if (!this.closed && ev.code !== 4003 && ev.code !== 4001) setTimeout(() => this.connect(), 500);
    };
    clearInterval(this.hb);
    this.hb = setInterval(() => { if (ws.readyState === 1) ws.send(JSON.stringify({ v: 1, type: "ping" })); }, 20000);
  }
  send(to, data) { this.ws.send(JSON.stringify({ v: 1, type: "signal", to, data })); }
  broadcast(data) { this.ws.send(JSON.stringify({ v: 1, type: "broadcast", data })); }
  leave() { this.closed = true; this.ws.send(JSON.stringify({ v: 1, type: "leave" })); }
}

export function wsUrl(path = "/v1/signal") {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}
