// hvsim web console: a minimal terminal widget for the serial console.
// Output: text with carriage return, backspace and newline handled, other
// control and escape sequences dropped. Input: keys as the bytes a serial
// terminal sends (Enter is CR, Backspace is DEL, arrows are ANSI cursor keys).
"use strict";

class MiniTerm {
  constructor(pre, send) {
    this.pre = pre;
    this.send = send;
    this.lines = [""];
    this.col = 0;
    this.esc = 0; // 0: text, 1: after ESC, 2: inside CSI
    this.decoder = new TextDecoder("utf-8");
    this.maxLines = 1000;
    this.scheduled = false;
    pre.tabIndex = 0;
    pre.addEventListener("keydown", (e) => this.key(e));
    pre.addEventListener("paste", (e) => {
      const t = e.clipboardData.getData("text");
      if (t) this.send(new TextEncoder().encode(t.replace(/\r?\n/g, "\r")));
      e.preventDefault();
    });
  }

  key(e) {
    let s = null;
    const named = {
      Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b",
      ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D",
      Home: "\x1b[H", End: "\x1b[F", Delete: "\x1b[3~",
    };
    if (e.ctrlKey && !e.altKey && e.key.length === 1) {
      const c = e.key.toUpperCase().charCodeAt(0);
      if (c >= 64 && c < 96) s = String.fromCharCode(c - 64);
    } else if (named[e.key] !== undefined) {
      s = named[e.key];
    } else if (e.key.length === 1 && !e.metaKey) {
      s = e.key;
    }
    if (s !== null) {
      this.send(new TextEncoder().encode(s));
      e.preventDefault();
    }
  }

  write(bytes) {
    const text = this.decoder.decode(bytes, { stream: true });
    for (const ch of text) this.put(ch);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => { this.scheduled = false; this.render(); });
    }
  }

  put(ch) {
    if (this.esc === 1) { this.esc = ch === "[" ? 2 : 0; return; }
    if (this.esc === 2) { if (ch >= "@" && ch <= "~") this.esc = 0; return; }
    const line = this.lines.length - 1;
    switch (ch) {
      case "\x1b": this.esc = 1; return;
      case "\r": this.col = 0; return;
      case "\n":
        this.lines.push(""); this.col = 0;
        if (this.lines.length > this.maxLines) this.lines.shift();
        return;
      case "\b": if (this.col > 0) this.col -= 1; return;
      case "\x07": return;
      default:
        if (ch < " " || ch === "\x7f") return;
    }
    const cur = this.lines[line];
    const padded = cur.length < this.col ? cur + " ".repeat(this.col - cur.length) : cur;
    this.lines[line] = padded.slice(0, this.col) + ch + padded.slice(this.col + 1);
    this.col += 1;
  }

  render() {
    const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
    this.pre.textContent = this.lines.join("\n");
    if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
  }

  text() { return this.lines.join("\n"); }
}

window.MiniTerm = MiniTerm;
