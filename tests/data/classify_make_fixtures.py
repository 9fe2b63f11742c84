"Regenerates the small classify/NER fixtures (run from the repo root): python tests/data/classify_make_fixtures.py"
import random, csv, json
random.seed(0)
topics = {
 "sport": "match goal team season coach league striker win cup players referee stadium".split(),
 "tech": "software chip phone internet users computer network data startup app code device".split(),
 "food": "recipe chef kitchen flavour dinner bread cheese sauce oven restaurant menu spicy".split(),
}
common = "the a of and to in said on for with this that new after more".split()
rows = []
for label, words in topics.items():
    for i in range(30):
        n = random.randint(8, 20)
        toks = [random.choice(words) if random.random() < 0.45 else random.choice(common) for _ in range(n)]
        rows.append((f"{label}-{i:02d}", " ".join(toks).capitalize() + ".", label))
random.shuffle(rows)
with open("tests/data/classify_topics.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["id", "text", "label"]); w.writerows(rows)
first = ["Anna", "Peter", "Maria", "John", "Lena", "Omar", "Yuki", "Carlos"]
last = ["Smith", "Meyer", "Rossi", "Khan", "Tanaka", "Silva"]
places = ["Paris", "Berlin", "New York", "Lagos", "Tokyo", "Lima", "Cairo", "Oslo"]
orgs = ["Acme Corp", "Reuters", "United Nations", "Siemens", "Red Cross"]
verbs = ["visited", "left", "praised", "joined", "called"]
def sentence():
    kind = random.random()
    per = [random.choice(first)] + ([random.choice(last)] if random.random() < 0.5 else [])
    toks, tags = list(per), ["B-PER"] + ["I-PER"] * (len(per) - 1)
    v = random.choice(verbs); toks.append(v); tags.append("O")
    obj = random.choice(places if kind < 0.5 else orgs).split()
    typ = "LOC" if kind < 0.5 else "ORG"
    toks += obj; tags += [f"B-{typ}"] + [f"I-{typ}"] * (len(obj) - 1)
    if random.random() < 0.5: toks += ["on", "Monday"]; tags += ["O", "O"]
    toks.append("."); tags.append("O")
    return toks, tags
for split, n in (("train", 150), ("dev", 30), ("test", 30)):
    with open(f"tests/data/classify_ner_{split}.conll", "w") as f:
        f.write("-DOCSTART- O\n\n")
        for _ in range(n):
            toks, tags = sentence()
            for t, g in zip(toks, tags): f.write(f"{t} {g}\n")
            f.write("\n")
