import ms from "ms";

/** Milliseconds since `start`, in words ("3s", "2m"). */
export function uptime(start: number, now: number = Date.now()): string {
  return ms(Math.max(0, now - start), { long: false });
}
