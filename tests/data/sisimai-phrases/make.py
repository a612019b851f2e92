"""Builds tests/data/sisimai-phrases.tsv from Sisimai's sources.

Every phrase of Sisimai's reason modules (Sisimai::Reason::*: string lists, ordered pairs, and
one example per alternative of their regular expressions) and of the reason tables of its MTA
and receiver modules (Sisimai::Lhost::*, Sisimai::Rhost::*) becomes one SMTP reply text. The
reason of a reason module's phrase is what that version's Sisimai::Reason->match answers for the
text (the module's own reason when that is undefined); for the MTA and receiver tables it is the
table's reason. divergences.tsv gives the verdict we give instead, and why, for the rows where
we differ on purpose.

Two versions are read: 4.25 as Debian installs it (libsisimai-perl) and 5.x from a checkout of
github.com/sisimai/p5-sisimai (its lib/ directory), given as the first argument:

    python3 tests/data/sisimai-phrases/make.py ../p5-sisimai/lib > tests/data/sisimai-phrases.tsv
"""
import glob, os, re, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from expand import expand, sp

HERE = os.path.dirname(os.path.abspath(__file__))
VERSIONS = [('4.25', '/usr/share/perl5'), ('5.1', sys.argv[1])]
# Texts the extraction leaves unreadable, as the MTA writes them.
FIXES = {
    "Mailaddress is administrative?le?y disabled": "Mailaddress is administratively disabled",
    "Sorry, I couldn't find any host": "Sorry, I couldn't find any host named example.org. (#5.1.2)",
    "rcpt (examplet exist": "rcpt (example) doesn't exist",
    "dd this user doesn't have a": "dd This user doesn't have a yahoo.com account",
}
# The receivers whose tables Sisimai applies only to their own mail, as our provider names.
PROVIDERS = {
    'Google': 'gmail', 'GoogleApps': 'gmail', 'Microsoft': 'microsoft',
    'ExchangeOnline': 'microsoft', 'YahooInc': 'yahoo', 'Apple': 'apple', 'FrancePTT': 'orange',
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

def pair(parts):
    """An ordered pair of Sisimai 5 (parts that must appear in this order) as one text: a word
    between parts that meet at a space or a bracket, a hyphen between parts of one word."""
    out = parts[0]
    for p in parts[1:]:
        if out.endswith(' ') or p.startswith(' '):
            out = out.rstrip() + ' example ' + p.lstrip()
        elif out[-1:].isalnum() and p[:1].isalnum():
            out += '-' + p
        else:
            out += 'example' + p
    return out

def table_texts(body):
    coded = re.findall(r"\[\s*'(\d{3})',\s*'([45]\.\d+\.\d+)',\s*'([^']*)'\s*\]", body)
    if coded:
        return [f'{c} {s} {t}' for c, s, t in coded]
    coded = re.findall(r"\['([45]\.\d+\.\d*)',\s*(\d+),\s*(\d+),\s*'([^']*)'\]", body)
    if coded:
        texts = []
        for status, lo, _hi, text in coded:
            if status.endswith('.'):
                status += lo
            code = '450' if status.startswith('4') else '550'
            texts.append(f'{code} {status} {text}' if text else f'{code} {status}')
        return texts
    return list(strings(body)) + list(regexes(body))

def read(tag, root):
    reasons = {os.path.basename(p)[:-3].lower() for p in glob.glob(f'{root}/Sisimai/Reason/*.pm')}
    rows = []  # (source, text, reason or None, provider)
    for path in sorted(glob.glob(f'{root}/Sisimai/Reason/*.pm')):
        mod = f'{tag} Reason::' + os.path.basename(path)[:-3]
        src = open(path).read()
        for m in re.finditer(r"state \$index\s*=\s*\[", src):
            rows += [(mod, t, None, '') for t in strings(bracketed(src, m.end()))]
        for m in re.finditer(r"state \$pairs\s*=\s*\[", src):
            for p in re.finditer(r"\[([^\[\]]*)\]", bracketed(src, m.end())):
                rows.append((mod, pair(list(strings(p.group(1)))), None, ''))
        for m in re.finditer(r"state \$regex\s*=\s*", src):
            rows += [(mod, t, None, '') for t in regexes(src[m.end():], first=True)]
    for path in sorted(glob.glob(f'{root}/Sisimai/Lhost/*.pm') + glob.glob(f'{root}/Sisimai/Rhost/*.pm')):
        name = path.split('/Sisimai/')[1][:-3]
        provider = PROVIDERS.get(name.split('/')[1], '') if name.startswith('Rhost') else ''
        src = re.sub(r'(?m)^\s*#.*$', '', open(path).read())
        for m in re.finditer(r"'(\w+)'\s*=>\s*(\[|qr)", src):
            reason = m.group(1)
            if reason not in reasons:
                continue
            if m.group(2) == 'qr':
                texts = list(regexes(src[m.end() - 2:], first=True))[:200]
            else:
                texts = table_texts(bracketed(src, m.end()))
            rows += [(f'{tag} ' + name.replace('/', '::'), t, reason, provider)
                     for t in texts if len(t.split()) >= 2]
    out, seen = [], set()
    for mod, t, reason, provider in rows:
        t = ' '.join(FIXES.get(' '.join(t.split()), ' '.join(t.split())).split())
        if not t:
            continue
        if not re.match(r'[245]\d\d ', t):
            t = '550 ' + t
        if (mod, t.lower()) in seen:
            continue
        seen.add((mod, t.lower()))
        out.append([mod, t, reason, provider])
    # the version's own answer for its reason modules' phrases
    inc = [] if root.startswith('/usr/share') else ['-I', root]
    perl = subprocess.run(
        ['perl', *inc, '-MSisimai::Reason', '-ne',
         'chomp; my $r = Sisimai::Reason->match($_) // ""; print "$r\\n"'],
        input='\n'.join(r[1] for r in out) + '\n', capture_output=True, text=True, check=True)
    for row, r in zip(out, perl.stdout.splitlines()):
        if row[2] is None:
            row[2] = r if r not in ('', 'undefined') else row[0].split('::')[1].lower()
    return out

divergences = {}
for line in open(os.path.join(HERE, 'divergences.tsv'), encoding='utf-8'):
    if line.startswith('#') or not line.strip():
        continue
    text, verdict = line.rstrip('\n').split('\t')
    divergences[text] = verdict

print('source\ttext\treason\tprovider\tdivergence')
used, seen = set(), set()
for tag, root in VERSIONS:
    for mod, t, reason, provider in read(tag, root):
        # a text both versions give the same reason is one row
        key = (mod.split(' ', 1)[1], t.lower(), reason, provider)
        if key in seen:
            continue
        seen.add(key)
        d = divergences.get(t, '')
        if d:
            used.add(t)
        print(f'{mod}\t{t}\t{reason}\t{provider}\t{d}')
for t in divergences:
    if t not in used:
        print(f'divergence for a text not produced: {t}', file=sys.stderr)
