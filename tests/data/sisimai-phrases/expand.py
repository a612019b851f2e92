"""Expands a Perl regular expression into example strings, one per alternative.

Used by make.sh to turn Sisimai's reason patterns into test texts.
"""
import re
import re._parser as sp
import re._constants as C

def expand(node_list, cap=64):
    # returns list of strings for a parsed subpattern
    outs = ['']
    for op, av in node_list:
        opts = one(op, av, cap)
        new = []
        for a in outs:
            for b in opts:
                new.append(a + b)
                if len(new) >= cap: break
            if len(new) >= cap: break
        outs = new
    return outs

def charclass(items):
    neg = False; chars = []
    for op, av in items:
        if op == C.NEGATE: neg = True
        elif op == C.LITERAL: chars.append(chr(av))
        elif op == C.RANGE: chars.append(chr(av[0]))
        elif op == C.CATEGORY:
            chars.append({C.CATEGORY_DIGIT:'0', C.CATEGORY_SPACE:' ', C.CATEGORY_WORD:'x'}.get(av, 'x'))
    if neg:
        return 'x'
    return chars[0] if chars else 'x'

def one(op, av, cap):
    if op == C.LITERAL: return [chr(av)]
    if op == C.NOT_LITERAL: return ['x']
    if op == C.ANY: return ['x']
    if op == C.IN: return [charclass(av)]
    if op in (C.SUBPATTERN,):
        return expand(av[3], cap)
    if op == C.ATOMIC_GROUP:
        return expand(av, cap)
    if op == C.BRANCH:
        r = []
        for b in av[1]:
            r.extend(expand(b, cap))
        return r[:cap]
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        lo, hi, sub = av
        base = expand(sub, cap)
        if lo == 0:
            # optional: prefer present once for '?', absent for '*'
            if hi == 1: return base + ['']
            return ['']
        # one or more: for a negated class repeat use a word
        if len(sub) == 1 and sub[0][0] == C.NOT_LITERAL:
            return ['example']
        if len(sub) == 1 and sub[0][0] == C.IN and any(o == C.NEGATE for o, _ in sub[0][1]):
            return ['example']
        return [b * lo for b in base]
    if op in (C.AT,): return ['']
    if op in (C.ASSERT, C.ASSERT_NOT): return ['']
    if op == C.GROUPREF: return ['']
    raise Exception(f'op {op}')

