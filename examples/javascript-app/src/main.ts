import "./styles.css";
import logo from "./logo.png";
import { uptime } from "./clock";

const started = Date.now();
console.log("WORKZ_RESULT " + JSON.stringify(uptime(started - 90_000, started)));

if (typeof document !== "undefined") {
  (document.getElementById("logo") as HTMLImageElement).src = logo;
  const output = document.getElementById("uptime")!;
  setInterval(() => (output.textContent = uptime(started)), 1000);
}
