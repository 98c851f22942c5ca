"""A small adapter over plpy: parameterised queries with cached plans."""


class Plpy:
    """Run `$n`-parameterised SQL through PL/Python, preparing each statement once."""

    def __init__(self, plpy):
        self.plpy = plpy
        self._plans = {}

    def execute(self, sql, types=(), args=()):
        if not types:
            return self.plpy.execute(sql)
        key = (sql, tuple(types))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self.plpy.prepare(sql, list(types))
        return self.plpy.execute(plan, list(args))

    def one(self, sql, types=(), args=()):
        rows = self.execute(sql, types, args)
        return rows[0] if rows.nrows() else None

    def setting(self, name):
        return self.one("SELECT current_setting($1, true) AS v", ["text"], [name])["v"]
