"""The write-up: the handout's written problems answered in prose with one run's numbers.

`build_report(ReportSources(...), out_path)` assembles the report; each module holds one group of
problems (unicode_answers, tokenizer_text, accounting_text, sgd_toy, sweeps_text, runs_text), each
function taking the JSON the graph's assets wrote and returning Markdown.
"""

from cs336_core.writeup.report import PROBLEMS, Report, ReportSources, build_report

__all__ = ["PROBLEMS", "Report", "ReportSources", "build_report"]
