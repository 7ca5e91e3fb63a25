"""Reads the Prometheus text exposition format (0.0.4) into samples, for
tests that compare what an exporter served with what Prometheus stored."""

import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text):
    """{(metric name, frozenset of (label, value)): float} of every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        name, labels, value = m.groups()
        pairs = frozenset((k, _unescape(v)) for k, v in _LABEL.findall(labels or ""))
        samples[(name, pairs)] = float(value)
    return samples
