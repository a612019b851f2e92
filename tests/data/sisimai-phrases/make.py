"""Builds tests/data/sisimai-phrases.tsv from an installed Sisimai (libsisimai-perl 4.25).

Every phrase of Sisimai's reason modules (Sisimai::Reason::*: string lists, and one example per
alternative of their regular expressions) and of the reason tables of its MTA and receiver
modules (Sisimai::Lhost::*, Sisimai::Rhost::*) becomes one SMTP reply text. Its reason is what
Sisimai::Reason->match answers for the text (the module's own reason when that is undefined);
for the MTA and receiver tables it is the table's reason. divergences.tsv gives the verdict we
give instead, and why, for the rows where we differ on purpose.

    python3 tests/data/sisimai-phrases/make.py > tests/data/sisimai-phrases.tsv
"""
import glob, os, re, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from expand import expand, sp

ROOT = '/usr/share/perl5/Sisimai'
HERE = os.path.dirname(os.path.abspath(__file__))
REASONS = {os.path.basename(p)[:-3].lower() for p in glob.glob(f'{ROOT}/Reason/*.pm')}
# Texts the extraction leaves unreadable, as the MTA writes them.
FIXES = {
    "Mailaddress is administrative?le?y disabled": "Mailaddress is administratively disabled",
    "Sorry, I couldn't find any host": "Sorry, I couldn't find any host named example.org. (#5.1.2)",
}

def strings(body):
    for s in re.finditer(r"(?<!qr)'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", body):
        t = s.group(1) if s.group(1) is not None else s.group(2)
        yield t.replace("\\'", "'")

def regexes(body, first=False):
    for r in re.finditer(r"qr([/{|])", body):
        close = {'/': '/', '{': '}', '|': '|'}[r.group(1)]
        k, depth = r.end(), 1
        while k < len(body):
            c = body[k]
            if c == '\\':
                k += 2
                continue
            if close == '}' and c == '{':
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    break
            k += 1
        pat = body[r.end():k]
        flags = body[k + 1:k + 4]
        pat = pat.replace('\\A', '').replace('\\z', '$').replace('\\Z', '$')
        try:
            yield from expand(list(sp.parse(pat, re.VERBOSE if 'x' in flags else 0)), cap=2000)
        except Exception as e:
            print(f'skipped a pattern: {e}', file=sys.stderr)
        if first:
            return

def bracketed(src, i):
    depth, j = 1, i
    while depth and j < len(src):
        depth += {'[': 1, ']': -1}.get(src[j], 0)
        j += 1
    return src[i:j - 1]

rows = []  # (source, text, reason or None)
for path in sorted(glob.glob(f'{ROOT}/Reason/*.pm')):
    mod = 'Reason::' + os.path.basename(path)[:-3]
    src = open(path).read()
    for m in re.finditer(r"state \$index\s*=\s*\[", src):
        rows += [(mod, t, None) for t in strings(bracketed(src, m.end()))]
    for m in re.finditer(r"state \$regex\s*=\s*", src):
        rows += [(mod, t, None) for t in regexes(src[m.end():], first=True)]
for path in sorted(glob.glob(f'{ROOT}/Lhost/*.pm') + glob.glob(f'{ROOT}/Rhost/*.pm')):
    mod = path.split('/Sisimai/')[1][:-3].replace('/', '::')
    src = re.sub(r'(?m)^\s*#.*$', '', open(path).read())
    for m in re.finditer(r"'(\w+)'\s*=>\s*(\[|qr)", src):
        reason = m.group(1)
        if reason not in REASONS:
            continue
        if m.group(2) == 'qr':
            texts = list(regexes(src[m.end() - 2:], first=True))[:200]
        else:
            body = bracketed(src, m.end())
            coded = re.findall(r"\['([45]\.\d+\.\d*)',\s*(\d+),\s*(\d+),\s*'([^']*)'\]", body)
            if coded:
                texts = []
                for status, lo, hi, text in coded:
                    if status.endswith('.'):
                        status += lo if lo != '0' else '0'
                    code = '450' if status.startswith('4') else '550'
                    texts.append(f'{code} {status} {text}' if text else f'{code} {status}')
            else:
                texts = list(strings(body)) + list(regexes(body))
        for t in texts:
            if len(t.split()) >= 2:
                rows.append((mod, t, reason))

divergences = {}
for line in open(os.path.join(HERE, 'divergences.tsv'), encoding='utf-8'):
    if line.startswith('#') or not line.strip():
        continue
    text, verdict = line.rstrip('\n').split('\t')
    divergences[text] = verdict

out, seen = [], set()
for mod, t, reason in rows:
    t = ' '.join(t.split())
    t = ' '.join(FIXES.get(t, t).split())
    if not t:
        continue
    if not re.match(r'[245]\d\d ', t):
        t = '550 ' + t
    if (mod, t.lower()) in seen:
        continue
    seen.add((mod, t.lower()))
    out.append([mod, t, reason])
# Sisimai's own answer for the reason modules' phrases
perl = subprocess.run(
    ['perl', '-MSisimai::Reason', '-ne',
     'chomp; my $r = Sisimai::Reason->match($_) // ""; print "$r\\n"'],
    input='\n'.join(r[1] for r in out) + '\n', capture_output=True, text=True, check=True)
for row, r in zip(out, perl.stdout.splitlines()):
    if row[2] is None:
        row[2] = r if r not in ('', 'undefined') else row[0].split('::')[1].lower()
print('source\ttext\treason\tdivergence')
used = set()
for mod, t, reason in out:
    d = divergences.get(t, '')
    used.add(t) if d else None
    print(f'{mod}\t{t}\t{reason}\t{d}')
for t in divergences:
    if t not in used:
        print(f'divergence for a text not produced: {t}', file=sys.stderr)
