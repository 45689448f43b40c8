"""The terminal report's pictures: the log-scale gradient bar, sparklines of a curve or a series,
and lines of phrases that wrap between phrases."""

from __future__ import annotations

import math

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.text import Text

from gradcheck_cli.records.stats import ThroughTime, TrainingHistory
from gradcheck_cli.records.text import count
from gradcheck_cli.render.base import fmt_num

EIGHTHS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"


class GradBar:
    """A bar whose length is log10 of a value, over `decades` decades below `top`."""

    def __init__(
        self, value: float, top: float, decades: float, width: int = 16, style: str = "cyan"
    ) -> None:
        self.value, self.top, self.decades, self.width, self.style = value, top, decades, width, style

    def fraction(self) -> float:
        if not (self.value > 0) or not math.isfinite(self.value) or not (self.top > 0):
            return 0.0
        return max(0.0, min(1.0, 1 + math.log10(self.value / self.top) / self.decades))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        eighths = round(self.fraction() * self.width * 8)
        full, part = divmod(eighths, 8)
        text = "█" * full + (EIGHTHS[part] if part else "")
        if not math.isfinite(self.value):
            text = "NaN/inf"
        yield Text(text.ljust(self.width), style=self.style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


def sparkline(curve: tuple[float, ...], width: int = 40, decades: float = 6.0) -> str:
    """Log-scale sparkline of a through-time curve, oldest step left, last step right.

    `decades` below the last step's gradient map to the lowest bar; exact zeros (float32
    underflow) show as '·' so they are not mistaken for a small value.
    """
    if not curve:
        return ""
    count = min(width, len(curve))
    picks = [round(i * (len(curve) - 1) / max(1, count - 1)) for i in range(count)]
    return "".join(_spark(curve[i], decades) for i in picks)


def _spark(value: float, decades: float) -> str:
    if not value > 0:
        return "·"
    level = max(0.0, min(1.0, 1 + math.log10(min(value, 1.0)) / decades))
    return SPARKS[round(level * (len(SPARKS) - 1))]


class Phrases:
    """Lines of short phrases joined by " · " that wrap between phrases, never inside one
    (unless a single phrase is wider than the line)."""

    def __init__(self, lines: list[list[tuple[str, str]]], sep: str = " · ") -> None:
        self.lines, self.sep = lines, sep

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        for phrases in self.lines:
            line, used = Text(), 0
            for i, (phrase, style) in enumerate(phrases):
                gap = self.sep if i and used else ""
                if used and used + len(gap) + len(phrase) > width:
                    yield line
                    line, used, gap = Text("  "), 2, ""
                line.append(gap + phrase, style=style)
                used += len(gap) + len(phrase)
            yield line


def trend(values: tuple[float, ...] | list[float], width: int = 40) -> str:
    """A sparkline of a series on a log scale between its own smallest and largest value;
    a non-finite step shows as '×'."""
    good = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        return ""
    low, high = (math.log10(min(good)), math.log10(max(good))) if good else (0.0, 0.0)
    count_ = min(width, len(values))
    picks = [round(i * (len(values) - 1) / max(1, count_ - 1)) for i in range(count_)]
    out = []
    for i in picks:
        v = values[i]
        if not math.isfinite(v):
            out.append("×")
        elif not v > 0:
            out.append("·")
        else:
            level = (math.log10(v) - low) / (high - low) if high > low else 0.5
            out.append(SPARKS[round(level * (len(SPARKS) - 1))])
    return "".join(out)


def training_sparks(history: TrainingHistory) -> Text:
    """--steps: the loss and the whole model's gradient norm per step, as sparklines."""
    text = Text(style="dim")
    rows = [("loss", history.loss)]
    if history.total_grad_norm:
        rows.append(("‖∇‖", history.total_grad_norm))
    for label, values in rows:
        finite = [v for v in values if math.isfinite(v)]
        span = f"{fmt_num(min(finite))}…{fmt_num(max(finite))}" if finite else "non-finite"
        text.append(f"  {label:<5}{trend(list(values))}  {span} over {count(len(values), 'step')} (log)\n")
    text.rstrip()
    return text


def through_time_block(items: tuple[ThroughTime, ...]) -> RenderableType:
    lines = Text()
    for tt in items:
        lines.append(f"{tt.module} ({tt.type}, {tt.steps} steps) ", style="bold")
        lines.append(f"x{tt.per_step_factor:.3f}/step · horizon {tt.horizon} steps\n")
        lines.append("  first step ")
        lines.append(sparkline(tt.curve), style="cyan")
        lines.append(" last step\n")
    lines.rstrip()
    return Panel(
        lines,
        title="gradient through time (log scale, 6 decades; · = underflow to 0)",
        title_align="left",
        border_style="dim",
    )
