"""String manipulation: reversing, counting letters and vowels, the n-th character, sorting letters,
replacing, capitalising, acronyms, removing vowels, counting words and characters."""

from __future__ import annotations

from random import Random

from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, exact, numeric, ordinal, pick

WORDS = ("strawberry", "mississippi", "banana", "keyboard", "elephant", "xylophone", "committee", "parallel",
         "bookkeeper", "algorithm", "butterfly", "chocolate", "difficult", "encyclopedia", "gymnasium",
         "hippopotamus", "javascript", "kangaroo", "labyrinth", "marshmallow", "necessary", "occurrence",
         "pineapple", "quizzical", "rhythm", "sapphire", "tennessee", "umbrella", "vacuum", "watermelon",
         "yesterday", "zucchini", "accommodate", "balloon", "cinnamon", "dictionary", "embarrass",
         "frequency", "giraffe", "horizon", "illuminate", "jellyfish", "knowledge", "lollipop", "mountain",
         "notebook", "orchestra", "penguin", "questionnaire", "raspberry", "scissors", "telescope",
         "universe", "volcano", "whisper", "examination", "yellow", "zeppelin", "abracadabra", "possession")
PHRASES = ("the quick brown fox", "a stitch in time saves nine", "practice makes perfect",
           "every cloud has a silver lining", "the early bird catches the worm", "actions speak louder than words",
           "better late than never", "knowledge is power", "time flies like an arrow",
           "all that glitters is not gold", "portable network graphics", "where there is smoke there is fire",
           "the pen is mightier than the sword", "fortune favours the bold", "laughter is the best medicine",
           "rome was not built in a day", "united nations educational scientific cultural organization",
           "look before you leap", "an apple a day keeps the doctor away", "still waters run deep",
           "graphics processing unit", "when in rome do as the romans do", "curiosity killed the cat",
           "two heads are better than one", "central processing unit", "beauty is in the eye of the beholder")
VOWELS = "aeiou"


def q(s: str) -> str:
    return f"'{s}'"


def reverse(r: Random) -> Draft:
    w = pick(r, WORDS)
    text = pick(r, [f"Reverse the word {q(w)}.", f"Write {q(w)} backwards.", f"What is {q(w)} spelled backwards?",
                    f"Spell the word {q(w)} in reverse order."])
    return exact(text + " Answer with the reversed word.", w[::-1])


def count_letter(r: Random) -> Draft:
    source = pick(r, WORDS if r.random() < 0.6 else PHRASES)
    letters = sorted(set(source.replace(" ", "")))
    c = pick(r, letters) if r.random() < 0.9 else pick(r, [x for x in "abcdefghijklmnopqrstuvwxyz" if x not in letters])
    text = pick(r, [f"How many times does the letter {q(c)} appear in {q(source)}?",
                    f"Count the occurrences of {q(c)} in {q(source)}.",
                    f"In {q(source)}, how many {q(c)} letters are there?"])
    return numeric(text + NUMBER, source.count(c))


def nth_letter(r: Random) -> Draft:
    w = pick(r, WORDS)
    n = r.randint(2, len(w))
    text = pick(r, [f"What is the {ordinal(n)} letter of the word {q(w)}?",
                    f"In the word {q(w)}, which letter is in position {n}, counting from 1?",
                    f"Which letter comes {ordinal(n)} in {q(w)}?"])
    return exact(text + " Answer with the letter.", w[n - 1])


def sort_letters(r: Random) -> Draft:
    w = pick(r, WORDS)
    text = pick(r, [f"Sort the letters of {q(w)} in alphabetical order.",
                    f"Rearrange the letters of the word {q(w)} so that they are in alphabetical order.",
                    f"Put the letters of {q(w)} in order from a to z."])
    return exact(text + " Answer with the sorted letters as one word.", "".join(sorted(w)))


def count_vowels(r: Random) -> Draft:
    source = pick(r, PHRASES if r.random() < 0.6 else WORDS)
    text = pick(r, [f"How many vowels (a, e, i, o, u) are in {q(source)}?",
                    f"Count the vowels a, e, i, o and u in {q(source)}.",
                    f"{q(source)}: how many of its letters are vowels (a, e, i, o, u)?"])
    return numeric(text + NUMBER, sum(ch in VOWELS for ch in source))


def replace(r: Random) -> Draft:
    w = pick(r, WORDS)
    a = pick(r, sorted(set(w)))
    b = pick(r, [x for x in "xzqjkvw" if x != a])
    text = pick(r, [f"Replace every {q(a)} in {q(w)} with {q(b)}.",
                    f"In the word {q(w)}, change each letter {q(a)} to {q(b)}.",
                    f"Substitute {q(b)} for every {q(a)} in {q(w)}."])
    return exact(text + " Answer with the new word.", w.replace(a, b))


def capitalise(r: Random) -> Draft:
    p = pick(r, PHRASES)
    text = pick(r, [f"Capitalize the first letter of every word in {q(p)}.",
                    f"Write {q(p)} in title case (each word starting with a capital letter).",
                    f"Make the first letter of each word of {q(p)} upper case."])
    return exact(text + " Answer with the new text.", " ".join(x[0].upper() + x[1:] for x in p.split()),
                 case_sensitive=True)


def acronym(r: Random) -> Draft:
    p = pick(r, PHRASES)
    text = pick(r, [f"Join the first letters of the words in {q(p)} and write them in capitals.",
                    f"What acronym do the initial letters of {q(p)} make, in capitals?",
                    f"Take the first letter of each word of {q(p)} and write them together in upper case."])
    return exact(text + " Answer with the letters.", "".join(x[0] for x in p.split()).upper(), case_sensitive=True)


def remove_vowels(r: Random) -> Draft:
    w = pick(r, WORDS)
    text = pick(r, [f"Remove every vowel (a, e, i, o, u) from {q(w)}.",
                    f"Delete the vowels a, e, i, o and u from the word {q(w)}.",
                    f"What is left of {q(w)} when all its vowels (a, e, i, o, u) are taken out?"])
    return exact(text + " Answer with the remaining letters as one word.", "".join(c for c in w if c not in VOWELS))


def count_words(r: Random) -> Draft:
    p = pick(r, PHRASES)
    if r.random() < 0.5:
        text = pick(r, [f"How many words are in {q(p)}?", f"Count the words in the phrase {q(p)}."])
        return numeric(text + NUMBER, len(p.split()))
    text = pick(r, [f"How many characters, spaces included, are in {q(p)}?",
                    f"What is the length of the string {q(p)}, counting spaces?"])
    return numeric(text + NUMBER, len(p))


def last_letters(r: Random) -> Draft:
    w = pick(r, WORDS)
    k = r.randint(2, 5)
    text = pick(r, [f"What are the last {k} letters of {q(w)}?", f"Write the final {k} letters of the word {q(w)}."])
    return exact(text + " Answer with the letters as one word.", w[-k:])


TEMPLATES: list[Template] = [reverse, count_letter, nth_letter, sort_letters, count_vowels, replace, capitalise,
                             acronym, remove_vowels, count_words, last_letters]
