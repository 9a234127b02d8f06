"""The pipeline DAG as an inline SVG: steps in layers (each below what it needs), edges that go around steps
(long edges pass through placeholder points in the layers they cross), each step coloured by its status."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Sequence

from pipelines.status import STYLES, StepOutcome

NODE_W, NODE_H, DUMMY_W = 208, 64, 14
GAP_X, GAP_Y, PAD = 34, 58, 24
ICONS = {"succeeded": "✓", "cached": "↺", "failed": "✗", "interrupted": "■", "running": "▸", "skipped": "–",
         "not-run": "○"}


@dataclass
class Placed:
    x: float  # centre
    layer: int
    width: float


def layers_of(names: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """Each step's layer: one below the deepest step it needs (the graph is acyclic)."""
    parents: dict[str, list[str]] = {n: [] for n in names}
    for parent, child, _ in edges:
        parents[child].append(parent)
    layer: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in layer:
            layer[name] = 0  # guards a malformed (cyclic) graph from endless recursion
            layer[name] = max((depth(p) + 1 for p in parents[name]), default=0)
        return layer[name]

    for name in names:
        depth(name)
    return layer


def layout(names: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> tuple[dict[str, Placed], list[list[str]]]:
    """Positions of steps and of the placeholders ('~i~k': edge i, k-th layer crossed); and each edge's chain."""
    layer = layers_of(names, edges)
    nodes = {n: Placed(0.0, layer[n], NODE_W) for n in names}
    chains: list[list[str]] = []
    for i, (parent, child, _) in enumerate(edges):
        chain = [parent]
        for k in range(layer[parent] + 1, layer[child]):
            dummy = f"~{i}~{k}"
            nodes[dummy] = Placed(0.0, k, DUMMY_W)
            chain.append(dummy)
        chains.append(chain + [child])
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for name in nodes:  # file order first, placeholders after
        rows[nodes[name].layer].append(name)
    ups: dict[str, list[str]] = {n: [] for n in nodes}
    downs: dict[str, list[str]] = {n: [] for n in nodes}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            downs[a].append(b)
            ups[b].append(a)
    for row in rows:
        _spread(row, nodes, [nodes[n].x for n in row])
    for _ in range(4):  # barycentre ordering, down then up
        for row in rows[1:]:
            _order(row, nodes, ups)
        for row in reversed(rows[:-1]):
            _order(row, nodes, downs)
    for _ in range(3):  # then positions: each node near the mean of its neighbours
        for row in rows[1:]:
            _place(row, nodes, ups)
        for row in reversed(rows[:-1]):
            _place(row, nodes, downs)
    left = min(p.x - p.width / 2 for p in nodes.values()) if nodes else 0
    for placed in nodes.values():
        placed.x += PAD - left
    return nodes, chains


def _order(row: list[str], nodes: dict[str, Placed], near: dict[str, list[str]]) -> None:
    keyed = [(sum(nodes[m].x for m in near[n]) / len(near[n]) if near[n] else nodes[n].x, i, n)
             for i, n in enumerate(row)]
    row[:] = [n for _, _, n in sorted(keyed)]
    _spread(row, nodes, [nodes[n].x for n in row])


def _spread(row: list[str], nodes: dict[str, Placed], wanted: list[float]) -> None:
    """Place row left to right as near to wanted as the gaps allow (mean of a forward and a backward pass)."""
    if not row:
        return
    sep = [(nodes[a].width + nodes[b].width) / 2 + GAP_X for a, b in zip(row, row[1:])]
    forward = [wanted[0]]
    for i in range(1, len(row)):
        forward.append(max(wanted[i], forward[-1] + sep[i - 1]))
    backward = [wanted[-1]]
    for i in range(len(row) - 2, -1, -1):
        backward.insert(0, min(wanted[i], backward[0] - sep[i]))
    for name, a, b in zip(row, forward, backward):
        nodes[name].x = (a + b) / 2


def _place(row: list[str], nodes: dict[str, Placed], near: dict[str, list[str]]) -> None:
    wanted = [sum(nodes[m].x for m in near[n]) / len(near[n]) if near[n] else nodes[n].x for n in row]
    _spread(row, nodes, wanted)


def render_svg(names: Sequence[str], types: dict[str, str], outcomes: dict[str, StepOutcome],
               edges: Sequence[tuple[str, str, str]]) -> str:
    """The DAG as an <svg> element (no external references), each step a <g class="node st-STATUS">."""
    nodes, chains = layout(names, edges)
    width = max((p.x + p.width / 2 for p in nodes.values()), default=0) + PAD
    depth = max((p.layer for p in nodes.values()), default=0) + 1
    height = PAD * 2 + depth * NODE_H + (depth - 1) * GAP_Y

    def top(layer: int) -> float:
        return PAD + layer * (NODE_H + GAP_Y)

    parts = [f'<svg class="dag" role="img" aria-label="pipeline graph" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6e7781"/></marker></defs>']
    for (parent, child, label), chain in zip(edges, chains):
        points = [(nodes[parent].x, top(nodes[parent].layer) + NODE_H)]
        for dummy in chain[1:-1]:
            points += [(nodes[dummy].x, top(nodes[dummy].layer)), (nodes[dummy].x, top(nodes[dummy].layer) + NODE_H)]
        points.append((nodes[child].x, top(nodes[child].layer) - 2))
        path = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if x0 == x1 and y1 - y0 == NODE_H:
                path += f" L{x1:.1f},{y1:.1f}"
            else:
                mid = (y0 + y1) / 2
                path += f" C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}"
        cls = f"edge edge-{label}" if label else "edge"
        parts.append(f'<path class="{cls}" d="{path}" fill="none" marker-end="url(#arrow)"/>')
        if label:
            (x0, y0), (x1, y1) = points[-2], points[-1]
            lx, ly = (x0 + x1) / 2, (y0 + y1) / 2
            parts.append(f'<g class="edge-label"><rect x="{lx - 20:.1f}" y="{ly - 9:.1f}" width="40" height="18" '
                         f'rx="9"/><text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="middle">{escape(label)}</text></g>')
    for name in names:
        parts.append(_node(name, types.get(name, ""), outcomes.get(name), nodes[name].x, top(nodes[name].layer)))
    parts.append("</svg>")
    return "\n".join(parts)


def _node(name: str, kind: str, outcome: StepOutcome | None, cx: float, y: float) -> str:
    status = outcome.status if outcome else "not-run"
    fill, stroke, text, words = STYLES[status]
    x = cx - NODE_W / 2
    dash = ' stroke-dasharray="5 3"' if status in ("skipped", "not-run") else ""
    shown = name if len(name) <= 24 else name[:23] + "…"
    detail = outcome.detail() if outcome else words
    detail = detail if len(detail) <= 34 else detail[:33] + "…"
    title = f"{name} ({kind}): {outcome.detail() if outcome else words}"
    return (f'<g class="node st-{status}" id="node-{escape(name)}" data-step="{escape(name)}" '
            f'data-status="{status}" tabindex="0"><title>{escape(title)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="10" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="2"{dash}/>'
            f'<text class="icon" x="{x + 14:.1f}" y="{y + 24:.1f}" fill="{stroke}">{ICONS[status]}</text>'
            f'<text class="name" x="{x + 32:.1f}" y="{y + 24:.1f}" fill="{text}">{escape(shown)}</text>'
            f'<text class="kind" x="{x + NODE_W - 12:.1f}" y="{y + 24:.1f}" text-anchor="end" fill="{text}">'
            f'{escape(kind.split(":")[-1])}</text>'
            f'<text class="detail" x="{x + 14:.1f}" y="{y + 48:.1f}" fill="{text}">{escape(detail)}</text></g>')


def legend_html() -> str:
    """One swatch per status, in the colours the graph uses."""
    items = []
    for status, (fill, stroke, _, words) in STYLES.items():
        if status != "running":
            style = "dashed" if status in ("skipped", "not-run") else "solid"
            items.append(f'<span class="legend-item st-{status}"><i style="background:{fill};border:2px {style} '
                         f'{stroke}"></i>{escape(words)}</span>')
    return f'<div class="legend">{"".join(items)}</div>'
