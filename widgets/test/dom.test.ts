// dom.ts's debounce: the one wait that estimate.ts and recommend.ts share.
import { afterEach, describe, expect, it, vi } from "vitest";
import { debounce } from "../src/dom";

describe("debounce", () => {
  afterEach(() => vi.useRealTimers());

  it("calls once, `delay` ms after the last of several calls", () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const call = debounce(fn, 100);
    call();
    vi.advanceTimersByTime(60);
    call(); // restarts the wait
    vi.advanceTimersByTime(60);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(40);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(500);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("cancel drops a waiting call; later calls still run", () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const call = debounce(fn, 50);
    call();
    call.cancel();
    vi.advanceTimersByTime(200);
    expect(fn).not.toHaveBeenCalled();
    call();
    vi.advanceTimersByTime(50);
    expect(fn).toHaveBeenCalledTimes(1);
  });
});
