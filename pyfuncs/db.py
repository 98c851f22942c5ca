"""A small adapter over plpy: parameterised queries whose plans live as long as the session."""

from collections import OrderedDict

# PL/Python keeps one interpreter per session, so this module (and the plans it holds)
# lives as long as the backend: a statement is prepared on its first use in a session,
# not on every call of a SQL function. Bounded, since a few statements embed names.
_PLANS = OrderedDict()
_MAX_PLANS = 256


class Plpy:
    """Run `$n`-parameterised SQL through PL/Python, preparing each statement once per session."""

    def __init__(self, plpy):
        self.plpy = plpy

    def execute(self, sql, types=(), args=()):
        if not types:
            return self.plpy.execute(sql)
        return self.plpy.execute(self._plan(sql, tuple(types)), list(args))

    def _plan(self, sql, types):
        key = (sql, types)
        plan = _PLANS.get(key)
        if plan is None:
            plan = _PLANS[key] = self.plpy.prepare(sql, list(types))
            if len(_PLANS) > _MAX_PLANS:
                _PLANS.popitem(last=False)
        else:
            _PLANS.move_to_end(key)
        return plan

    def one(self, sql, types=(), args=()):
        rows = self.execute(sql, types, args)
        return rows[0] if rows.nrows() else None

    def setting(self, name):
        return self.one("SELECT current_setting($1, true) AS v", ["text"], [name])["v"]
