"""The DNNFusion planner (DESIGN §2.5, Appendix A): seeds are unfused One-to-One operators, smallest
intermediate result first (then, beyond the paper, the remaining operators in the same order); each seed's block grows along successors, then predecessors, under the pair table,
a constraint check, an acyclicity (convexity) check and, for yellow cells, the profile database."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..ops import MappingType
from . import cost
from .ecg import ECG, OpInfo, most_complex
from .plan import Block, Reason, Rejection, YellowDecision
from .profile_db import Profile, ProfileDB
from .table import Verdict, pair

MM = MappingType.MANY_TO_MANY


# Operators per block. A fused block's values inline into one loop body, so an unbounded chain (thousands of
# elementwise operators) gives one kernel that gcc compiles slowly and a planner pass that is quadratic in the
# block's size; TVM bounds fusion the same way (FuseOps max_depth, 256). No block of the model zoo comes close.
MAX_BLOCK_OPS = 256


@dataclass(frozen=True)
class PlannerOptions:
    """The constraint check's bounds (the paper's register-pressure threshold, made explicit)."""

    max_block_inputs: int = 16        # distinct non-constant tensors a block reads from outside
    max_many_to_many: int = 1         # "dominant" Many-to-Many operators per block
    max_block_ops: int = MAX_BLOCK_OPS  # operators per block (code size and compile time of one kernel)


class _Partition:
    """Groups of operators (blocks being formed and unfused singletons) and the quotient graph between them."""

    def __init__(self, ecg: ECG) -> None:
        self.ops = ecg.ops
        self.group = list(range(len(ecg.ops)))               # op index -> group id
        self.members = {i: [i] for i in range(len(ecg.ops))}  # group id -> op indices
        self.formed: set[int] = set()                          # groups that are blocks (not unfused singletons)

    def successors(self, g: int) -> set[int]:
        return {self.group[c.index] for i in self.members[g] for c in self.ops[i].consumers} - {g}

    def reaches(self, start: int, target: int, skip_direct: bool) -> bool:
        """Whether group `target` is reachable from `start` (with skip_direct: only through another group).
        A group on a path to `target` holds an operator that precedes target's last one, which prunes the search."""
        limit = max(self.members[target])
        frontier = [g for g in self.successors(start) if not (skip_direct and g == target)]
        seen = set(frontier)
        while frontier:
            g = frontier.pop()
            if g == target:
                return True
            if min(self.members[g]) >= limit:
                continue
            for s in self.successors(g):
                if s not in seen:
                    seen.add(s)
                    frontier.append(s)
        return False

    def would_cycle(self, a: int, b: int) -> bool:
        """Merging groups a and b creates a cycle iff a path joins them through a third group."""
        return self.reaches(a, b, skip_direct=True) or self.reaches(b, a, skip_direct=True)

    def merge(self, keep: int, other: int) -> None:
        for i in self.members.pop(other):
            self.group[i] = keep
            self.members[keep].append(i)
        self.members[keep].sort()
        self.formed.discard(other)

    def topological_groups(self) -> list[int]:
        """Groups in an order they can run (Kahn's algorithm on the quotient graph, stable by first operator)."""
        indegree = {g: 0 for g in self.members}
        succ = {g: self.successors(g) for g in self.members}
        for g in succ:
            for s in succ[g]:
                indegree[s] += 1
        ready = [(min(self.members[g]), g) for g, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, g = heapq.heappop(ready)
            order.append(g)
            for s in succ[g]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    heapq.heappush(ready, (min(self.members[s]), s))
        if len(order) != len(self.members):
            raise AssertionError("fusion plan has a cycle between blocks")   # the convexity check prevents this
        return order


class DNNFusionPlanner:
    """One planning run over an ECG; `plan()` returns the Plan."""

    def __init__(self, ecg: ECG, options: PlannerOptions, db: ProfileDB | None) -> None:
        self.ecg, self.options, self.db = ecg, options, db
        self.part = _Partition(ecg)
        self.types: dict[int, MappingType] = {}
        self.rejections: list[Rejection] = []
        self.yellow: list[YellowDecision] = []
        self.hits = self.misses = 0

    # --- the checks --------------------------------------------------------------------------------
    def _block(self, g: int) -> list[OpInfo]:
        return [self.ecg.ops[i] for i in self.part.members[g]]

    def _constraint(self, block: list[OpInfo], candidate: OpInfo) -> str | None:
        ops = block + [candidate]
        if len(ops) > self.options.max_block_ops:
            return f"{len(ops)} operators > {self.options.max_block_ops}"
        if sum(o.mapping is MM for o in ops) > self.options.max_many_to_many:
            return f"more than {self.options.max_many_to_many} Many-to-Many operator(s)"
        produced = {id(v) for o in ops for v in o.node.outputs if v is not None}
        inputs = {id(v) for o in ops for v in o.node.inputs
                  if v is not None and v.const is None and id(v) not in produced}
        if len(inputs) > self.options.max_block_inputs:
            return f"{len(inputs)} block inputs > {self.options.max_block_inputs}"
        return None

    def _profile(self, block: list[OpInfo], candidate: OpInfo) -> tuple[Profile, str]:
        pattern = [[o.node.op_type, o.node.domain, [list(v.shape) for v in o.node.inputs if v is not None],
                    [str(v.dtype) for v in o.node.outputs if v is not None], o.mapping.value]
                   for o in sorted(block + [candidate], key=lambda o: o.index)] + ["row-major"]
        if self.db is not None:
            found = self.db.lookup(pattern)
            if found is not None:
                self.hits += 1
                return found, "profile-db"
            self.misses += 1
        profile = cost.estimate(block, candidate)
        if self.db is not None:
            self.db.record(pattern, profile)
        return profile, profile.source

    def try_merge(self, g: int, candidate: OpInfo, producer: OpInfo, consumer: OpInfo) -> bool:
        """Add `candidate` (an unfused operator) to group g; producer/consumer name the edge that joins them."""
        if not candidate.fusible:
            self.rejections.append(Rejection(Reason.UNSUPPORTED, producer, consumer))
            return False
        block = self._block(g)
        forward = candidate is consumer
        if (candidate.mapping is MM and self.awaits_producer(block)) if forward else \
                (consumer.mapping is MM and self.awaits_producer([candidate])):
            self.rejections.append(Rejection(Reason.EPILOGUE, producer, consumer))
            return False
        if forward:
            edge = most_complex([candidate.edge_mapping(p) for p in candidate.producers
                                 if self.part.group[p.index] == g], candidate.mapping)
            cell = pair(self.types[g], edge)
        else:
            cell = pair(candidate.mapping_within(set(self.part.members[g])), self.types[g])
        if cell.verdict is Verdict.RED:
            self.rejections.append(Rejection(Reason.RED, producer, consumer))
            return False
        verdict = cell.verdict
        if verdict is Verdict.GREEN and cost.prologue_recompute(block + [candidate]) > cost.prologue_recompute(block):
            verdict = Verdict.YELLOW      # a green pair whose fused producer a template would re-evaluate: profile it
        if verdict is Verdict.GREEN and cost.broadcast_recompute(block + [candidate]) - \
                cost.broadcast_recompute(block) > cost.KERNEL_SECONDS:
            verdict = Verdict.YELLOW      # a producer read One-to-Many, recomputed per read for more than a kernel
                                          # launch costs (an index chain per gathered element): profile it
        problem = self._constraint(block, candidate)
        if problem:
            self.rejections.append(Rejection(Reason.CONSTRAINT, producer, consumer, problem))
            return False
        if self.part.would_cycle(g, self.part.group[candidate.index]):
            self.rejections.append(Rejection(Reason.CONVEXITY, producer, consumer))
            return False
        if verdict is Verdict.YELLOW:
            profile, source = self._profile(block, candidate)
            self.yellow.append(YellowDecision(producer, consumer, profile.fuse, source,
                                              profile.fused_seconds, profile.unfused_seconds))
            if not profile.fuse:
                self.rejections.append(Rejection(Reason.PROFILE, producer, consumer,
                                                 f"{profile.fused_seconds:.3g}s fused vs "
                                                 f"{profile.unfused_seconds:.3g}s apart ({source})"))
                return False
        self.part.merge(g, self.part.group[candidate.index])
        self.types[g] = cell.fused
        return True

    # --- growth ----------------------------------------------------------------------------------------
    def _unfused(self, info: OpInfo) -> bool:
        return self.part.group[info.index] not in self.part.formed

    def grow_forward(self, g: int, info: OpInfo) -> None:
        """Grow group g along successors of `info`, depth first."""
        self._grow(g, info, forward=True)

    def grow_backward(self, g: int, info: OpInfo) -> None:
        """Grow group g along predecessors of `info`, depth first."""
        self._grow(g, info, forward=False)

    def _grow(self, g: int, start: OpInfo, forward: bool) -> None:
        """Depth-first growth from `start`: each operator that joins is explored before its next sibling (the
        order of the recursive formulation, so plans do not change), on an explicit stack so that a chain of
        thousands of operators does not hit Python's recursion limit."""
        def neighbours(info: OpInfo) -> list[OpInfo]:
            return info.consumers if forward else info.producers

        stack = [(start, iter(neighbours(start)))]
        while stack:
            info, pending = stack[-1]
            for other in pending:
                producer, consumer = (info, other) if forward else (other, info)
                if self._unfused(other) and self.try_merge(g, other, producer, consumer):
                    stack.append((other, iter(neighbours(other))))
                    break
            else:
                stack.pop()

    def awaits_producer(self, ops: list[OpInfo]) -> bool:
        """Whether One-to-One operators that compute (an activation, a residual Add) read an unfused
        Many-to-Many outside them, whose epilogue they should become: computed once per output on its finished
        register tile, rather than in a consumer's prologue, which a template applies in an extra pass over its
        input (a depthwise convolution's phased copy). Pure data movement (a Concat, no FLOPs) keeps the paper's
        order: in a consumer's prologue it is never materialised, in an epilogue its other inputs are copied."""
        inside = {o.index for o in ops}
        return all(o.mapping is MappingType.ONE_TO_ONE and o.flops > 0 for o in ops) and any(
            p.mapping is MM and p.fusible and p.index not in inside and self._unfused(p)
            for o in ops for p in o.producers)

    def plan(self) -> tuple[list[Block], list[Rejection], list[YellowDecision]]:
        # The paper seeds only One-to-One operators and leaves the rest as single-op blocks; we then also seed
        # what is left (a Conv whose Transpose/Reshape follow, a Gather chain), smallest IRS first as well.
        seeds = [(o.mapping is not MappingType.ONE_TO_ONE, o.irs_bytes, o.index) for o in self.ecg.ops if o.fusible]
        heapq.heapify(seeds)
        while seeds:
            _, _, index = heapq.heappop(seeds)
            seed = self.ecg.ops[index]
            if not self._unfused(seed):
                continue
            g = self.part.group[index]
            self.part.formed.add(g)
            self.types[g] = seed.mapping
            self.grow_forward(g, seed)
            self.grow_backward(g, seed)
        blocks = []
        for g in self.part.topological_groups():
            ops = self._block(g)
            mapping = self.types.get(g, ops[0].mapping)
            blocks.append(Block(len(blocks), ops, mapping))
        return blocks, self.rejections, self.yellow


def plan_dnnfusion(ecg: ECG, db: ProfileDB | None = None, options: PlannerOptions = PlannerOptions()
                   ) -> tuple[list[Block], list[Rejection], list[YellowDecision], int, int]:
    """Blocks, rejections, yellow decisions, profile-DB hits and misses."""
    planner = DNNFusionPlanner(ecg, options, db)
    blocks, rejections, yellow = planner.plan()
    return blocks, rejections, yellow, planner.hits, planner.misses

