/**
 * The relay's Prometheus metrics (text exposition format 0.0.4): counters and gauges with
 * labels, kept in memory and rendered on `/metrics`. Labels never hold payloads, and topics
 * appear only as a count: per-topic figures go by a short prefix of the TopicId, which is
 * already public to the relay.
 */
type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return `{${keys.map((k) => `${k}="${escape(labels[k] ?? '')}"`).join(',')}}`;
}

class Family {
  readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    /** Computed at scrape time instead of kept. */
    readonly collect?: () => number,
  ) {}

  add(labels: Labels, n: number): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + n);
  }

  set(labels: Labels, n: number): void {
    this.values.set(labelKey(labels), n);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  counter(
    name: string,
    help: string,
  ): { inc(labels?: Labels, n?: number): void; get(labels?: Labels): number } {
    const f = this.family(name, help, 'counter');
    return {
      inc: (labels = {}, n = 1) => {
        f.add(labels, n);
      },
      get: (labels = {}) => f.get(labels),
    };
  }

  gauge(name: string, help: string, collect?: () => number): { set(n: number, labels?: Labels): void } {
    const f = this.family(name, help, 'gauge', collect);
    return {
      set: (n, labels = {}) => {
        f.set(labels, n);
      },
    };
  }

  private family(name: string, help: string, type: 'counter' | 'gauge', collect?: () => number): Family {
    let f = this.families.get(name);
    if (f === undefined) {
      f = new Family(name, help, type, collect);
      this.families.set(name, f);
    }
    return f;
  }

  render(): string {
    const out: string[] = [];
    for (const f of this.families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      if (f.collect !== undefined) out.push(`${f.name} ${f.collect()}`);
      else if (f.values.size === 0) out.push(`${f.name} 0`);
      for (const [k, v] of f.values) out.push(`${f.name}${k} ${v}`);
    }
    return `${out.join('\n')}\n`;
  }
}
