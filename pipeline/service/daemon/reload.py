"""SIGHUP reload of the decision rules: re-read the config file, validate, swap.

Owns what a reload may change while frames flow: the `rules` section (per-class
thresholds, counts, areas, ROIs, ignored classes). The new rule book is built and
checked against the model's classes first, then handed to the decide stage in one
reference swap (`DecideStage.replace_rules`); the stage picks it up at its next batch,
so no frame is dropped, delayed or judged by a half-built rule book. Any problem (file
unreadable, invalid YAML or values, rules naming classes the model lacks) rejects the
whole reload: the error is logged and the old rules stay. Changes to other sections are
not applied (they need a restart, which the log says, naming the sections).
What crosses the boundary: a config path in; the applied config and a result out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from pipeline.config import ConfigError, PipelineConfig, load_config
from pipeline.parts.rules import RuleBook

log = logging.getLogger(__name__)


class RuleReloader:
    def __init__(self, path: Path, current: PipelineConfig, replace_rules: Callable[[RuleBook], None],
                 class_names: tuple[str, ...], on_applied: Callable[[PipelineConfig], None] | None = None):
        self.path = Path(path)
        self.current = current
        self.replace_rules = replace_rules
        self.class_names = class_names
        self.on_applied = on_applied

    def reload(self) -> bool:
        """True when the new rules are in force (or unchanged), False when rejected."""
        try:
            new = load_config(self.path)
            rules = self._rule_book(new)
        except ConfigError as exc:
            log.error("reload rejected, the current rules stay in force: %s", exc)
            return False
        # every config section compared by its field name (a lookup, not a capability probe)
        ignored = [name for name in type(new).model_fields
                   if name != "rules" and getattr(new, name) != getattr(self.current, name)]
        if ignored:
            log.warning("reload: changes to %s need a restart and were not applied", ", ".join(ignored))
        if new.rules == self.current.rules:
            log.info("reload: %s read, rules unchanged", self.path)
            return True
        self.replace_rules(rules)
        self.current = self.current.model_copy(update={"rules": new.rules})
        if self.on_applied is not None:
            self.on_applied(self.current)
        log.info("reload: new rules from %s in force", self.path)
        return True

    def _rule_book(self, config: PipelineConfig) -> RuleBook:
        book = RuleBook(config.rules, self.class_names)
        unknown = book.unknown_rule_classes()
        if unknown:
            raise ConfigError(f"{self.path}: rules name classes the model does not have: {unknown}; "
                              f"the model's classes are {list(self.class_names)}")
        return book
