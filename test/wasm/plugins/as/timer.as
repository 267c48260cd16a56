// Timers and metrics: on_configure sets a 20 ms tick; each tick bumps a counter and a gauge and
// records a histogram sample; after 3 ticks the timer is cancelled (period 0).
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, Counter, Gauge, Histogram, log, LogLevelValues } from "@solo-io/proxy-runtime";
import { set_tick_period_milliseconds, get_current_time_nanoseconds } from "@solo-io/proxy-runtime/runtime";

class TimerRoot extends RootContext {
  ticks: u32 = 0;
  counter: Counter;
  gauge: Gauge;
  hist: Histogram;
  constructor(context_id: u32) {
    super(context_id);
    this.counter = new Counter("timer_ticks_total");
    this.gauge = new Gauge("timer_gauge");
    this.hist = new Histogram("timer_hist");
  }
  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    set_tick_period_milliseconds(20);
    return true;
  }
  onTick(): void {
    this.ticks++;
    this.counter.increment(1);
    this.gauge.increment(10);
    this.hist.record(this.hist.metric_id, 7);
    const now = get_current_time_nanoseconds();
    log(LogLevelValues.info, "tick " + this.ticks.toString() + " at " + (now > 1000000000000000000 ? "sane" : "insane"));
    if (this.ticks == 3) set_tick_period_milliseconds(0);
  }
  createContext(context_id: u32): Context {
    return new Context(context_id, this);
  }
}

registerRootContext((context_id: u32) => { return new TimerRoot(context_id); }, "timer");
