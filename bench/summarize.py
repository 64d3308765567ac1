"""Print a compact table of a pytest-benchmark JSON: per group, each provider's median, its
speedup over the eager reference and over torch.compile(reference), GB/s and peak memory.

    python bench/summarize.py results.json [--markdown]
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    markdown = "--markdown" in argv
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1:
        print(__doc__)
        return 2
    with open(paths[0]) as f:
        data = json.load(f)
    groups = defaultdict(dict)
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        provider = info.get("provider", b["name"])
        groups[b["group"]][provider] = (b["stats"]["median"], info)
    machine = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "")
    print(f"# {paths[0]} ({machine})")
    header = ["group", "provider", "median_ms", "x_ref", "x_compile", "GB/s", "peak_MB"]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print(f"{header[0]:<44} {header[1]:<10} {header[2]:>10} {header[3]:>7} {header[4]:>9} {header[5]:>8} {header[6]:>9}")
    for group in sorted(groups):
        rows = groups[group]
        ref = rows.get("reference", (None,))[0]
        comp = rows.get("compile", (None,))[0]
        for provider, (median, info) in sorted(rows.items(), key=lambda kv: kv[1][0]):
            x_ref = f"{ref / median:.2f}" if ref else "-"
            x_comp = f"{comp / median:.2f}" if comp else "-"
            cells = [group, provider, f"{median * 1e3:.4f}", x_ref, x_comp, str(info.get("GB/s", "-")),
                     str(info.get("peak_MB", "-"))]
            if markdown:
                print("| " + " | ".join(cells) + " |")
            else:
                print(f"{cells[0]:<44} {cells[1]:<10} {cells[2]:>10} {cells[3]:>7} {cells[4]:>9} {cells[5]:>8} {cells[6]:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
