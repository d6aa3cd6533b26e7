/**
 * Counts over the last minute in one-second slots, with no timer: slots are rotated lazily when
 * counted or read. Used for `/healthz?probe=stream` (rejections, client aborts).
 */
export class MinuteWindow {
  private readonly slots = new Float64Array(60);
  private slotSecond = 0;

  private rotate(nowSec: number): void {
    const gap = nowSec - this.slotSecond;
    if (gap <= 0) return;
    if (gap >= 60) this.slots.fill(0);
    else for (let s = this.slotSecond + 1; s <= nowSec; s++) this.slots[s % 60] = 0;
    this.slotSecond = nowSec;
  }

  add(n = 1, nowMs = Date.now()): void {
    const sec = Math.floor(nowMs / 1000);
    this.rotate(sec);
    this.slots[sec % 60] += n;
  }

  total(nowMs = Date.now()): number {
    this.rotate(Math.floor(nowMs / 1000));
    let t = 0;
    for (let i = 0; i < 60; i++) t += this.slots[i] as number;
    return t;
  }
}
