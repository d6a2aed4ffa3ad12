"""The synthetic watch list and the names the workload sends: one set of name pools for both.

Listed entries and legitimate payers are drawn from the same pools (Latin names with accents,
Russian names in BGN-style transliteration with Cyrillic native-script aliases, Arabic-origin
names in common transliterations, company names), so legitimate traffic produces the near-misses
real screening sees: a shared surname, a shared first name, a similar company. Nothing is
downloaded; every entry is made up, and any resemblance to a real listed party is coincidence.

`python -m reference_impl.compliance.sanctions_list -o reference_impl/data/watchlist.csv` rewrites
the shipped list; the same seed gives the same file byte for byte.

Pure: randomness comes from the `random.Random` passed in.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

SEED = 13
ENTRIES = 3000
COLUMNS = ("id", "schema", "name", "aliases", "countries", "program", "dataset")

RU_MALE = (
    "Aleksandr Aleksey Anatoliy Andrey Anton Arkadiy Boris Vadim Valeriy Vasiliy Viktor Vitaliy "
    "Vladimir Vladislav Vyacheslav Gennadiy Georgiy Grigoriy Denis Dmitriy Yevgeniy Igor Ilya "
    "Kirill Konstantin Leonid Maksim Mikhail Nikolay Oleg Pavel Pyotr Roman Ruslan Sergey "
    "Stanislav Stepan Timur Fyodor Yuriy Yaroslav Ivan Gleb Artyom Semyon Matvey Bogdan Eduard "
    "Nikita Arseniy Rostislav Valentin Yegor Zakhar Lev Vsevolod Makar Daniil Timofey"
).split()
RU_FEMALE = (
    "Anna Yelena Olga Tatyana Natalya Irina Svetlana Marina Yekaterina Lyudmila Galina Nadezhda "
    "Valentina Oksana Yuliya Viktoriya Darya Kseniya Polina Alina Vera Larisa Zhanna Inna "
    "Margarita Sofiya Anastasiya Yevgeniya Veronika Alyona Lyubov Raisa Zoya Nina Elvira"
).split()
RU_SURNAMES = (
    "Ivanov Petrov Sidorov Smirnov Kuznetsov Popov Vasilyev Sokolov Mikhaylov Novikov Fyodorov "
    "Morozov Volkov Alekseyev Lebedev Semyonov Yegorov Pavlov Kozlov Stepanov Nikolayev Orlov "
    "Andreyev Makarov Nikitin Zakharov Zaytsev Solovyov Borisov Yakovlev Grigoryev Romanov "
    "Vorobyov Sergeyev Kuzmin Frolov Aleksandrov Dmitriyev Korolyov Gusev Kiselyov Ilyin Maksimov "
    "Polyakov Sorokin Vinogradov Kovalyov Belov Medvedev Antonov Tarasov Zhukov Baranov Filippov "
    "Komarov Davydov Belyayev Gerasimov Bogdanov Osipov Sidorenko Matveyev Titov Markov Mironov "
    "Krylov Kulikov Karpov Vlasov Melnikov Denisov Gavrilov Tikhonov Kazakov Afanasyev Danilov "
    "Savelyev Timofeyev Fomin Chernov Abramov Martynov Yefimov Fedotov Shcherbakov Nazarov "
    "Kalinin Isayev Chernyshov Bykov Maslov Rodionov Konovalov Lazarev Voronin Klimov Filatov "
    "Ponomaryov Golubev Kudryavtsev Prokhorov Naumov Potapov Zhuravlyov Ovchinnikov Trofimov "
    "Leonov Sobolev Yermakov Kolesnikov Goncharov Yemelyanov Nikiforov Grachyov Kotov Grishin "
    "Yefremov Arkhipov Gromov Kirillov Malyshev Panov Moiseyev Rumyantsev Akimov Kondratyev "
    "Biryukov Gorbunov Anisimov Yeremin Tikhomirov Galkin Lukyanov Mikheyev Skvortsov Yudin "
    "Belousov Nesterov Simonov Prokofyev Kharitonov Knyazev Tsvetkov Levin Mitrofanov Voronov "
    "Aksyonov Sofronov Maltsev Loginov Gorshkov Savin Krasnov Mayorov Demidov Yeliseyev Rybakov "
    "Safonov Plotnikov Demin Khokhlov Fadeyev Molchanov Ignatov Litvinov Yershov Ushakov "
    "Dementyev Ryabov Mukhin Kalashnikov Leontyev Lobanov Kuzin Korneyev Yevdokimov Borodin "
    "Platonov Nekrasov Balashov Bobrov Zhdanov Blinov Ignatyev Korotkov Muravyov Kryukov "
    "Belyakov Bogomolov Drozdov Lavrov Zuyev Petukhov Larin Nikulin Serov Terentyev Zotov "
    "Ustinov Fokin Samoylov Konstantinov Sazonov Shubin Rozhkov Kornilov Vishnevsky Kovalenko "
    "Shevchenko Bondarenko Tkachenko Kravchenko Oleynik Savchenko Rudenko Moroz Lysenko "
    "Dubinin Zverev Kurochkin Tretyakov Shestakov Pakhomov Seliverstov Chistyakov Lapin Guryev"
).split()
AR_MALE = (
    "Mohammed Ahmed Ali Hassan Hussein Omar Khalid Youssef Abdullah Ibrahim Mustafa Tariq Karim "
    "Faisal Hamza Bilal Jamal Walid Samir Adel Rami Ziad Fadi Majid Saeed Rashid Salim Yasser "
    "Osama Anwar Imad Nabil Hisham Marwan Ayman Bassam Ghassan Hani Jalal Kamal Mahmoud Munir "
    "Nizar Qasim Raed Sami Sultan Tawfiq Wael Yahya Zaid Abdulrahman Abdelaziz Ismail Idris "
    "Suleiman Younes Hamid Mansour Nasser Salah Fouad Jihad Riyad Shakir Talal Zuhair Haitham"
).split()
AR_FEMALE = (
    "Fatima Aisha Maryam Khadija Zainab Layla Nour Huda Rania Samira Amira Salma Yasmin Hana "
    "Dina Lina Rima Souad Nadia Leila Ghada Widad Asma Basma Hiba Jamila Lubna Mona Sana Wafa"
).split()
AR_SURNAMES = (
    "Al-Rashid Al-Masri Haddad Khoury Mansour Saleh Hamdan Abbas Aziz Rahman Karimi Al-Hashimi "
    "Al-Amin Al-Ahmad Al-Zahrani Al-Qahtani Al-Ghamdi Al-Harbi Al-Otaibi Al-Shamsi Al-Mansouri "
    "Al-Sayed El-Sayed Barakat Darwish Farouk Habib Hijazi Jaber Kassem Khalil Mahfouz Nassar "
    "Obeid Qureshi Sabbagh Shaheen Tahan Yassin Zaidan Awad Bakri Chahine Diab Fakhoury Ghanem "
    "Haidar Issa Jarrah Kanaan Maalouf Najjar Rizk Saad Salameh Tamimi Zoabi Al-Khatib "
    "Al-Tikriti Al-Jaziri Al-Badawi Al-Bakr Al-Dulaimi Al-Obaidi Al-Jubouri Al-Shammari "
    "Al-Saadi Al-Hakim Al-Najafi Al-Kurdi Al-Halabi Al-Homsi Al-Baghdadi Al-Yemeni Al-Libi "
    "Al-Tunisi Al-Maghribi Hakimi Bensaid Benali Bouazizi Cherif Ouali Mebarki Belkacem "
    "Boumediene Hamidi Toumi Al-Asaad Al-Hariri Al-Fayed Al-Sharif Al-Husseini Al-Mahdi "
    "Al-Qassab Al-Rifai Al-Sabah Al-Thani Al-Nahyan Al-Maktoum Al-Kuwari Al-Marri Al-Mulla"
).split()
LATIN_GIVEN = (
    "José María Juan Luis Carlos Jorge Andrés Ramón Álvaro Joaquín Sofía Lucía Inés João Gonçalo "
    "Sebastião François Sébastien Jérôme Hélène Chloé Zoé Jürgen Jörg Günther Björn Søren Łukasz "
    "Michał Paweł Wojciech Małgorzata Agnieszka Zoltán Gábor Dávid Tomáš Jiří Miloš Dragan Goran "
    "Nikola Marco Giovanni Luca Francesca Giulia John Michael David James Robert William Richard "
    "Thomas Daniel Paul Mark Peter Sarah Emma Laura Elena Carmen Pedro Miguel Rafael Diego "
    "Fernando Pablo Sergio Javier Manuel Antonio Francisco Ana Isabel Pilar Rosa Teresa Beatriz "
    "Cristina Raúl Rubén Óscar Iñigo Nuño Hugo Émile Amélie Anaïs Noël Maëlle Stefan Klaus "
    "Dieter Wolfgang Heinz Uwe Katrin Ute Sven Lars Nils Åsa Ingrid Matteo Alessandro Chiara "
    "Henrik Mikkel Tobias Lukas Felix Julia Marta Ewa Krzysztof Piotr Tomasz Zsófia Ágnes"
).split()
LATIN_SURNAMES = (
    "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz "
    "Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez "
    "Vázquez Ramos Gil Ramírez Serrano Blanco Molina Morales Suárez Ortega Delgado Castro Ortiz "
    "Rubio Marín Sanz Núñez Iglesias Medina Garrido Cortés Castillo Santos Lozano Guerrero Cano "
    "Prieto Méndez Cruz Calvo Gallego Vidal León Márquez Herrera Peña Flores Cabrera Campos Vega "
    "Fuentes Carrasco Caballero Reyes Nieto Aguilar Pascual Santana Herrero Lorenzo Montero "
    "Hidalgo Giménez Ibáñez Ferrer Durán Benítez Mora Vicente Vargas Arias Carmona Crespo Román "
    "Pastor Soto Sáez Velasco Moya Soler Parra Esteban Bravo Gallardo Rojas Silva Gonçalves "
    "Conceição Magalhães Araújo Sousa Simões Lefèvre Dubois Lefebvre Moreau Bérénger Girard "
    "Rousseau Mercier Lambert Fontaine Chevalier Müller Schröder Schäfer Köhler Weiß Groß "
    "Hoffmann Schneider Fischer Weber Wagner Becker Schulz Koch Bauer Richter Klein Wolf Neumann "
    "Schwarz Zimmermann Braun Krüger Hartmann Lange Werner Krause Meier Lehmann Kowalski Nowak "
    "Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak Dąbrowski "
    "Kozłowski Horváth Kovács Szabó Tóth Nagy Novák Dvořák Černý Procházka Kučera Petrović "
    "Jovanović Nikolić Marković Đorđević Rossi Russo Ferrari Esposito Bianchi Romano Colombo "
    "Ricci Marino Greco Bruno Gallo Conti Costa Giordano Mancini Rizzo Lombardi Moretti Smith "
    "Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Moore Jackson Thompson "
    "White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams "
    "Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards Collins "
    "Stewart Morris Murphy Cook Rogers O'Brien O'Connor MacDonald Andersen Nielsen Jensen Hansen "
    "Larsen Johansson Lindqvist Sjöberg Åkesson Jansen Bakker Visser Dijkstra Smit"
).split()
ORG_ADJECTIVES = (
    "Golden Silver Red Blue Green Black White Great Northern Eastern Western Southern Global "
    "United First New Royal Prime Grand Crescent Star Pearl Falcon Eagle Cedar Lotus Phoenix "
    "Orient Meridian Horizon Summit Delta Alpha Omega Atlas Titan Sapphire Emerald Diamond"
).split()
ORG_PLACES = (
    "Caspian Baltic Volga Ural Siberian Euphrates Tigris Levant Gulf Aden Oman Orinoco Andes "
    "Danube Adriatic Aegean Persian Mediterranean Atlantic Pacific Arctic Sahara Sinai Damascus "
    "Aleppo Tehran Minsk Caracas Pyongyang Odessa Crimea Donetsk Murmansk Novorossiysk "
    "Vladivostok Tartus Latakia Basra Mosul Benghazi Tripoli Khartoum Sevastopol Kaliningrad"
).split()
ORG_SECTORS = (
    "Trading;Shipping;Petroleum;Oil and Gas;Logistics;Maritime;Energy;Mining;Metals;Chemicals;"
    "Engineering;Construction;Import Export;Investment;Finance;Capital;Securities;Industries;"
    "Technologies;Electronics;Aviation;Telecom;Agro;Pharma;Textiles;Precious Metals;Exchange;"
    "Tankers;Freight;Minerals;Steel;Defence Systems;Machinery;Commodities;Fisheries;Timber"
).split(";")
ORG_NOUNS = (
    "Group Holdings Company Corporation Enterprises Partners Ventures Resources Services "
    "Solutions International Bank Establishment Agency Alliance Consortium"
).split()
LEGAL_FORMS = (
    "LLC;Ltd;Limited;GmbH;S.A.;SA;SARL;JSC;OOO;OAO;PJSC;FZE;FZCO;LLP;Inc.;Corp.;AG;BV;NV;SpA;"
    "S.r.l.;Co.;PLC;AO;ZAO"
).split(";")
COUNTRIES = {
    "ru": ("ru", "by", "ua", "kz", "cy", "ae"),
    "ar": ("sy", "iq", "ir", "lb", "ye", "ly", "ae", "sa", "af", "sd"),
    "latin": ("ve", "cu", "ni", "co", "mx", "es", "pa", "rs", "ba", "it"),
    "org": ("ru", "ir", "sy", "kp", "ae", "by", "ve", "cy", "hk", "tr", "cn", "mm"),
}
PROGRAMS = {
    "ru": ("RUSSIA-EO14024", "UKRAINE-EO13661", "BELARUS-EO14038", "CYBER2"),
    "ar": ("SDGT", "SYRIA", "IRAQ2", "IRAN", "YEMEN", "LIBYA3", "FTO"),
    "latin": ("VENEZUELA-EO13850", "SDNTK", "CUBA", "NICARAGUA", "BALKANS", "TCO"),
    "org": ("RUSSIA-EO14024", "IRAN", "SYRIA", "DPRK3", "NPWMD", "SDGT", "VENEZUELA-EO13850"),
}
DATASETS = (("OFAC-SDN", "us_ofac_sdn"), ("EU-FSF", "eu_fsf"), ("UK-HMT", "gb_hmt_sanctions"))

# Spellings a clerk or an evader writes for the same name: each group is one name.
SPELLINGS = (
    "Mohammed Muhammad Mohamed Mohammad Muhammed Mohamad Mohd",
    "Ahmed Ahmad Ahmet",
    "Hussein Husain Hussain Husayn Hussien",
    "Hassan Hasan Hassen",
    "Youssef Yusuf Yousef Youssouf Yousif",
    "Omar Umar Omer",
    "Khalid Khaled Chalid",
    "Abdullah Abdallah Abdulla",
    "Mustafa Mostafa Moustafa Mustapha",
    "Ibrahim Ebrahim Ibraheem",
    "Saeed Said Sayed Saied",
    "Rashid Rasheed Rachid",
    "Osama Usama Oussama",
    "Suleiman Sulaiman Sleiman Soliman",
    "Younes Yunus Younis",
    "Mahmoud Mahmud Mahmood",
    "Qasim Kassem Kasim Qassim",
    "Aleksandr Alexander Alexandr Aleksander",
    "Aleksey Alexei Alexey Aleksei",
    "Sergey Sergei Serguei",
    "Dmitriy Dmitry Dmitri",
    "Yuriy Yuri Yury Iouri",
    "Yevgeniy Evgeny Evgeniy Yevgeny",
    "Nikolay Nikolai",
    "Andrey Andrei",
    "Vasiliy Vasily Vassili",
    "Grigoriy Grigory Grigori",
    "Mikhail Michail Mikhael",
    "Fyodor Fedor Fiodor",
    "Pyotr Petr Piotr",
    "Artyom Artem",
    "Semyon Semen",
    "Maksim Maxim",
    "Yelena Elena Jelena",
    "Yekaterina Ekaterina",
    "Natalya Natalia Nataliya",
    "Tatyana Tatiana",
    "Yuliya Yulia Julia",
    "José Jose",
    "João Joao",
    "François Francois",
)
_SPELLING = {
    word.casefold(): tuple(w for w in group.split() if w != word)
    for group in SPELLINGS
    for word in group.split()
}
# Suffix and letter-cluster rewrites between transliteration systems (BGN, German, French).
_REWRITES: tuple[tuple[str, str], ...] = (
    (r"ov$", "off"),
    (r"ev$", "eff"),
    (r"ov$", "ow"),
    (r"iy$", "y"),
    (r"iy$", "i"),
    (r"^Ye", "E"),
    (r"yev", "ev"),
    (r"ks", "x"),
    (r"kh", "h"),
    (r"kh", "ch"),
    (r"zh", "j"),
    (r"ts", "tz"),
    (r"^Al-", "Al "),
    (r"^Al-", "El-"),
    (r"^Al-", "Al"),
    (r"ee", "i"),
    (r"ou", "u"),
    (r"y", "i"),
    (r"sch", "sh"),
    (r"ph", "f"),
)
_TO_CYRILLIC = (
    ("shch", "щ"), ("kh", "х"), ("zh", "ж"), ("ch", "ч"), ("sh", "ш"), ("ts", "ц"), ("ya", "я"),  # noqa: RUF001
    ("yu", "ю"), ("ye", "е"), ("yo", "ё"), ("a", "а"), ("b", "б"), ("v", "в"), ("g", "г"),  # noqa: RUF001
    ("d", "д"), ("e", "е"), ("z", "з"), ("i", "и"), ("y", "й"), ("k", "к"), ("l", "л"),  # noqa: RUF001
    ("m", "м"), ("n", "н"), ("o", "о"), ("p", "п"), ("r", "р"), ("s", "с"), ("t", "т"),  # noqa: RUF001
    ("u", "у"), ("f", "ф"),  # noqa: RUF001
)  # fmt: skip
_VOWELS = frozenset("aeiouy")
_GIVEN = frozenset(w.casefold() for w in (*RU_MALE, *RU_FEMALE, *AR_MALE, *AR_FEMALE, *LATIN_GIVEN))
_RU_WORDS = frozenset(w.casefold() for w in (*RU_MALE, *RU_FEMALE, *RU_SURNAMES))
_PATRONYMIC_STEMS = {"Pyotr": "Petr", "Lev": "Lv"}
_ACCENTABLE = {"a": "á", "e": "é", "i": "í", "o": "ó", "u": "ú", "n": "ñ", "c": "ç"}


def _feminine(surname: str) -> str:
    if surname.endswith(("ov", "ev", "in", "yn")):
        return surname + "a"
    if surname.endswith("sky"):
        return surname[:-1] + "aya"
    return surname


def _patronymic(father: str, female: bool) -> str | None:
    """Russian patronymic from the father's given name; None for the irregular ones (Ilya)."""
    if father.endswith(("a", "o")):
        return None
    stem = _PATRONYMIC_STEMS.get(father, father)
    if stem.endswith("y"):
        return stem + ("evna" if female else "evich")
    return stem + ("ovna" if female else "ovich")


def russian_name(rng: random.Random, full: bool) -> str:
    female = rng.random() < 0.3
    given = rng.choice(RU_FEMALE if female else RU_MALE)
    surname = rng.choice(RU_SURNAMES)
    surname = _feminine(surname) if female else surname
    patronymic = _patronymic(rng.choice(RU_MALE), female) if full else None
    return " ".join(p for p in (given, patronymic, surname) if p)


def arabic_name(rng: random.Random, full: bool) -> str:
    female = rng.random() < 0.2
    given = rng.choice(AR_FEMALE if female else AR_MALE)
    surname = rng.choice(AR_SURNAMES)
    if not full:
        return f"{given} {surname}"
    link = "bint" if female else rng.choice(("bin", "ibn", ""))
    father = rng.choice(AR_MALE)
    return " ".join(p for p in (given, link, father, surname) if p)


def latin_name(rng: random.Random, full: bool) -> str:
    given = rng.choice(LATIN_GIVEN)
    surname = rng.choice(LATIN_SURNAMES)
    if full:
        second = rng.choice(LATIN_SURNAMES)
        return (
            f"{given} {surname} {second}"
            if rng.random() < 0.6
            else (f"{given} {rng.choice(LATIN_GIVEN)} {surname}")
        )
    return f"{given} {surname}"


def company_name(rng: random.Random) -> str:
    first = rng.choice(
        (rng.choice(ORG_ADJECTIVES), rng.choice(ORG_PLACES), rng.choice(RU_SURNAMES),
         f"{rng.choice(ORG_ADJECTIVES)} {rng.choice(ORG_PLACES)}",
         rng.choice(AR_SURNAMES).removeprefix("Al-"))
    )  # fmt: skip
    parts = [first, rng.choice(ORG_SECTORS)]
    if rng.random() < 0.6:
        parts.append(rng.choice(ORG_NOUNS))
    if rng.random() < 0.8:
        parts.append(rng.choice(LEGAL_FORMS))
    return " ".join(parts)


def person_name(rng: random.Random) -> str:
    """A plausible legitimate payer: a person (most) or a company, from the watch list's pools."""
    roll = rng.random()
    full = rng.random() < 0.3
    if roll < 0.45:
        return latin_name(rng, full)
    if roll < 0.65:
        return russian_name(rng, full)
    if roll < 0.85:
        return arabic_name(rng, full)
    return company_name(rng)


def to_cyrillic(name: str) -> str:
    """Render a Russian name given in Latin transliteration in Cyrillic (a native-script alias)."""
    out = []
    for word in name.split():
        lower, cyr, i = word.casefold(), [], 0
        while i < len(lower):
            if (
                lower[i] == "y"
                and i > 0
                and lower[i - 1] not in _VOWELS
                and (i + 1 == len(lower) or lower[i + 1] not in _VOWELS)
            ):
                cyr.append("ы")  # between consonants, y is the vowel: Krylov, Bykov
                i += 1
                continue
            for latin, native in _TO_CYRILLIC:
                if lower.startswith(latin, i):
                    cyr.append(native)
                    i += len(latin)
                    break
            else:
                cyr.append(lower[i])
                i += 1
        text = "".join(cyr)
        out.append(text[:1].upper() + text[1:])
    return " ".join(out)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _pick_word(words: list[str], rng: random.Random, min_len: int) -> int | None:
    eligible = [i for i, w in enumerate(words) if len(w) >= min_len]
    return rng.choice(eligible) if eligible else None


def _respell(words: list[str], rng: random.Random) -> list[str]:
    """Another transliteration of one word: a known spelling, else a rewrite rule that applies."""
    order = list(range(len(words)))
    rng.shuffle(order)
    for i in order:
        others = _SPELLING.get(words[i].casefold())
        if others:
            return [*words[:i], rng.choice(others), *words[i + 1 :]]
    rules = list(_REWRITES)
    rng.shuffle(rules)
    for i in order:
        for pattern, repl in rules:
            new = re.sub(pattern, repl, words[i], count=1)
            if new != words[i]:
                return [*words[:i], new, *words[i + 1 :]]
    return words


def _drop_letter(words: list[str], rng: random.Random) -> list[str]:
    i = _pick_word(words, rng, 5)
    if i is None:
        return words
    w = words[i]
    k = rng.randrange(1, len(w))
    return [*words[:i], w[:k] + w[k + 1 :], *words[i + 1 :]]


def _double_letter(words: list[str], rng: random.Random) -> list[str]:
    i = _pick_word(words, rng, 4)
    if i is None:
        return words
    w = words[i]
    k = rng.randrange(1, len(w))
    return [*words[:i], w[:k] + w[k] + w[k:], *words[i + 1 :]]


def _swap_order(words: list[str], rng: random.Random) -> list[str]:
    if len(words) < 2:
        return words
    return [words[-1], *words[:-1]] if rng.random() < 0.7 else words[::-1]


def _accents(words: list[str], rng: random.Random) -> list[str]:
    stripped = [_strip_accents(w) for w in words]
    if stripped != words:
        return stripped
    i = rng.randrange(len(words))
    spots = [k for k, c in enumerate(words[i]) if c in _ACCENTABLE]
    if not spots:
        return words
    k = rng.choice(spots)
    w = words[i]
    return [*words[:i], w[:k] + _ACCENTABLE[w[k]] + w[k + 1 :], *words[i + 1 :]]


def _initial(words: list[str], rng: random.Random) -> list[str]:
    """The first given name as an initial (never the last word, taken for the surname)."""
    if len(words) < 2 or words[0].casefold() not in _GIVEN:
        return words
    return [f"{words[0][0].upper()}.", *words[1:]]


def _case(words: list[str], rng: random.Random) -> list[str]:
    change = rng.choice((str.upper, str.lower, str.title))
    return [change(w) for w in words]


def _native_script(words: list[str], rng: random.Random) -> list[str]:
    if not all(w.casefold() in _RU_WORDS or w.casefold().endswith(("vich", "vna")) for w in words):
        return words
    return to_cyrillic(" ".join(words)).split()


_VARIANTS: tuple[Callable[[list[str], random.Random], list[str]], ...] = (
    _respell, _respell, _respell, _drop_letter, _double_letter, _swap_order, _accents, _initial,
    _case, _native_script,
)  # fmt: skip


_ATTEMPTS = 20


def name_variant(name: str, rng: random.Random) -> str:
    """A spelling of `name` a sanctions evader or a clerk would write: one or two changes.

    Transliteration variants (Mohammed/Muhammad, Aleksandr/Alexander, -ov/-off), a dropped or
    doubled letter, the surname moved first, accents removed or added, the first name as an
    initial, upper or lower case, a Russian name in Cyrillic. A change that does not apply to
    the name is skipped for another, so the result differs from the input unless no change
    applies (an empty name).
    """
    for _attempt in range(_ATTEMPTS):
        words = name.split()
        for _ in range(1 if rng.random() < 0.6 else 2):
            words = rng.choice(_VARIANTS)(words, rng)
        if words != name.split():
            break
    return " ".join(words)


def _aliases(name: str, culture: str, rng: random.Random) -> list[str]:
    aliases: list[str] = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        alias = " ".join(_respell(name.split(), rng))
        if alias != name and alias not in aliases:
            aliases.append(alias)
    if culture == "ru" and rng.random() < 0.5:
        aliases.append(to_cyrillic(name))
    return aliases


def watchlist_rows(rng: random.Random, entries: int = ENTRIES) -> list[dict[str, str]]:
    """The synthetic list: persons (Russian, Arabic-origin, Latin) and organisations."""
    makers: dict[str, Callable[[random.Random], str]] = {
        "ru": lambda r: russian_name(r, r.random() < 0.7),
        "ar": lambda r: arabic_name(r, r.random() < 0.6),
        "latin": lambda r: latin_name(r, r.random() < 0.6),
        "org": company_name,
    }
    cultures: Sequence[str] = ("ru", "ru", "ru", "ar", "ar", "ar", "latin", "org", "org", "org")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < entries:
        culture = rng.choice(cultures)
        name = makers[culture](rng)
        if name.casefold() in seen:
            continue
        seen.add(name.casefold())
        prefix, dataset = rng.choice(DATASETS)
        countries = rng.sample(COUNTRIES[culture], rng.choice((1, 1, 1, 2)))
        rows.append(
            {
                "id": f"{prefix}-{len(rows) + 1:06d}",
                "schema": "Organization" if culture == "org" else "Person",
                "name": name,
                "aliases": ";".join(_aliases(name, culture, rng)),
                "countries": ";".join(countries),
                "program": rng.choice(PROGRAMS[culture]),
                "dataset": dataset,
            }
        )
    return rows


def write_watchlist(path: Path, seed: int = SEED, entries: int = ENTRIES) -> None:
    rows = watchlist_rows(random.Random(seed), entries)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_impl.compliance.sanctions_list", description=__doc__
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="the CSV to write")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--entries", type=int, default=ENTRIES)
    args = parser.parse_args(argv)
    write_watchlist(args.out, args.seed, args.entries)
    print(f"wrote {args.entries} entries to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
