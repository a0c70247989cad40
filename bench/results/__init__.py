"""A results folder and everything that reads it: :class:`~bench.results.folder.ResultsFolder` (every path), the
typed :class:`~bench.results.cell_record.CellRecord`, verdicts and statistics, leaderboards and their renderings,
plots, the HTML report, compare, published references and the regression comparison. Never trains anything.
"""
