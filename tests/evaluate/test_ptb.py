"""PTB tokenisation without Java, equal to pycocoevalcap's PTBTokenizer (CoreNLP 3.4.1, -lowerCase)."""

from __future__ import annotations

import json
import shutil

import pytest

from medvlm.evaluate.ptb import PUNCTUATIONS, ptb_tokenize, ptb_tokenize_batch

# (text, what pycocoevalcap's Java tokenizer returns after its punctuation removal), recorded from the jar.
TRICKY = [
    ('Heart (normal) [x] {y} "quoted" it\'s don\'t 2.5 cm. 1,000 e.g. vs. Dr. Smith', "heart -lrb- normal -rrb- -lsb- x -rsb- -lcb- y -rcb- quoted it 's do n't 2.5 cm 1,000 e.g. vs. dr. smith"),
    ('T11-T12 AP/lateral s/p 3:00 p.m. 50% >5 <3 +2 & # a\\b', 't11-t12 ap/lateral s/p 3:00 p.m. 50 % > 5 < 3 +2 & # a \\ b'),
    ('No acute disease...', 'no acute disease'),
    ('Done.  Next-- line; ok?!', 'done next line ok ?!'),
    ('x-ray. 1. No change. 2. Stable.', 'x-ray 1 no change 2 stable'),
    ('café naïve – — ‘a’ “b”', 'café naïve a b'),
    ('Colour fibre haemorrhage leukaemia tumour centre anaemia', 'colour fibre haemorrhage leukaemia tumour centre anaemia'),
    ('etc. The end etc. the end. Dr. Smith vs. Jones e.g. the i.e. The U.S. The U.S. is. No. 5 approx. 3 cm.', 'etc. the end etc. the end dr. smith vs. jones e.g. the i.e. the u.s. the u.s. is no. 5 approx 3 cm'),
    ('cannot won\'t I\'m they\'re patient\'s patients\' \'quoted\' "Hello" said', "can not wo n't i 'm they 're patient 's patients quoted hello said"),
    ('<b>bold</b> a<5 x>3 [1] 5 7/8 1/2 (555) 123-4567', '<b> bold </b> a < 5 x > 3 -lsb- 1 -rsb- 5\xa07/8 1/2 -lrb-555-rrb-\xa0123-4567'),
    ('Stable.No change. heart.Lungs 2.5.3 L1-L2. T11-12. 4x5 cm 10cm 3-4 mm ~5 ^ | = * ** a*b', 'stable.no change heart.lungs 2.5.3 l1-l2 t11-12 4x5 cm 10cm 3-4 mm ~ 5 ^ | = * ** a * b'),
    ('Right-sided. mid-to-lower well-defined/ill-defined AP/PA. Left 1st rib.', 'right-sided mid-to-lower well-defined/ill-defined ap/pa left 1st rib'),
    ('No. 3. E. coli. St. Mary. A. B. Cc.', 'no. 3 e. coli st. mary a. b. cc'),
    ('. . . end .. two .... four ----- five --- three', 'end two four ----- five three'),
    ('x.', 'x.'),
    ('approx.', 'approx'),
    ('No.', 'no'),
    ('Is it? Yes! Really?!', 'is it yes really ?!'),
    ("Dx: CHF; r/o PNA. Pt's CXR 9/10 +/- 1", "dx chf r/o pna pt 's cxr 9/10 + / 1"),
    ('100% 5mg 2cm. 3. 4.5cm. 1,2', '100 % 5mg 2cm 3 4.5 cm 1,2'),
    ('& &amp; A&M AT&T', '& & a&m at&t'),
    ('Mass. Miss. Mass', 'mass. miss. mass'),
    ('Ill. hello ill. Co. co. The', 'ill. hello ill co. co. the'),
    ('stable.No a.b ab.cd 12.ab ab.12 x.y.z', 'stable.no a.b ab.cd 12 ab ab .12 x.y.z'),
    ('Fig. 3 fig. The ca. 5 est. the ft. the Ft. 5 no. The', 'fig. 3 fig the ca. 5 est. the ft. the ft. 5 no the'),
    ('5° ± 2 × 3 µm 2² → • · ™ € 😀 ½', '5 ° ± 2 × 3 µm 2 ² → • · ™ $ 1/2'),
    ('x-ray., l1-l2., 2cm., 1.5-cm. ok', 'x-ray. l1-l2. 2cm. 1.5-cm ok'),
    ("O'Brien o'brien d'Avignon rock'n'roll y'all", "o'brien o'brien d'avignon rock 'n' roll y' all"),
    ("iv''s in", 'iv s in'),
    ('normal.&gt;] Lung', 'normal > -rsb- lung'),
    ('chest CT. Otherwise', 'chest ct. otherwise'),
    ('http://a.org/b?c=1.', 'http://a.org/b?c=1'),
    ('__init__ @user #tag', '__ init __ @user #tag'),
    ('Size: 3.5 x 2.1 cm (prior 3.0 x 2.0 cm).', 'size 3.5 x 2.1 cm -lrb- prior 3.0 x 2.0 cm -rrb-'),
    ('COPD/emphysema, s/p CABG x3; PICC -> SVC.', 'copd/emphysema s/p cabg x3 picc > svc'),
    ('Ca++ Na+ K+', 'ca + + na + k +'),
    ("there's ain't can't shan't", "there 's ai n't ca n't sha n't"),
    ('We cannot. Cannot be excluded.', 'we can not can not be excluded'),
    ('', ''),
]


@pytest.mark.parametrize(("text", "expected"), TRICKY)
def test_tokens_match_the_java_tokenizer_on_tricky_strings(text, expected):
    assert ptb_tokenize(text) == expected


def test_report_text_is_lower_cased_and_loses_punctuation():
    assert ptb_tokenize("Heart size is normal. No pneumothorax, effusion (left).") == (
        "heart size is normal no pneumothorax effusion -lrb- left -rrb-"
    )
    assert "-LRB-" in PUNCTUATIONS  # pycocoevalcap's list; the lower-cased "-lrb-" survives it


def test_batch_looks_ahead_across_captions_like_the_java_tokenizer():
    # A one-letter abbreviation before a sentence-starting word on the next caption loses its period.
    assert ptb_tokenize_batch(["vitamin V.", "The end"]) == ["vitamin v", "the end"]
    assert ptb_tokenize("vitamin V.") == "vitamin v."
    assert ptb_tokenize_batch(["a", "", "b"]) == ["a", "", "b"]


def test_line_breaks_inside_a_text_are_spaces():
    assert ptb_tokenize("No effusion.\nNo pneumothorax.\r\nStable.") == "no effusion no pneumothorax stable"


@pytest.mark.skipif(shutil.which("java") is None, reason="the reference Java tokenizer needs Java")
def test_equal_to_pycocoevalcap_tokenizer_on_real_generated_reports(realdata):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    path = realdata / "mslora_cr_results" / "finetune_lora_each-64-64_llava_med_v1.5" / "iu-x-ray" / "answer-file.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for field in ("text", "gt"):
        java = PTBTokenizer().tokenize({i: [{"caption": r[field]}] for i, r in enumerate(rows)})
        ours = ptb_tokenize_batch([r[field] for r in rows])
        assert [java[i][0] for i in range(len(rows))] == ours
