// A one-line progress bar on stderr (redrawn in place on a terminal; otherwise a line at the start and one at the end).

export class Progress {
  private readonly start = performance.now();
  private lastDecile = -1;

  constructor(private readonly label: string, private readonly total: number, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.update(0);
  }

  update(done: number): void {
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const secs = (performance.now() - this.start) / 1000;
    const width = 24;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    const line = `${this.label.padEnd(28)} [${bar}] ${done}/${this.total} ${secs.toFixed(1)}s`;
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}`);
      if (frac >= 1) this.stream.write("\n");
    } else {
      const decile = Math.floor(frac * 10);
      if (decile !== this.lastDecile && (decile === 10 || decile === 0)) this.stream.write(line + "\n");
      this.lastDecile = decile;
    }
  }

  done(): void {
    this.update(this.total);
  }
}
