"""How ``lunar_2026_2035.csv`` was made (kept for provenance; not run by the suite).

No published lunar calendar (Hong Kong Observatory, Purple Mountain Observatory) could be reached from the
machine this was written on, so the table was computed once with a SECOND library, independent of the one
carepath uses (``lunardate``, a table of month lengths): ``lunar-python`` 1.4.8 (6tail), which derives the
calendar from astronomical new moons and solar terms (the 寿星天文历 algorithm). The festival rows were
also compared by hand with the Spring Festival, Dragon Boat and Mid-Autumn dates widely published for
these years; they agree. Re-run with ``pip install lunar-python==1.4.8`` to check it.

Lunar birthdays follow carepath's documented rule: the birthday is the lunar month and day of birth; a
birthday on the 30th is kept on the 29th in years whose month has 29 days; a birthday in a leap month is
kept in the ordinary month of the same number.
"""

import csv
import sys
from datetime import date

from lunar_python import Lunar, LunarMonth, Solar

FESTIVALS = {"春节": (1, 1), "元宵": (1, 15), "端午": (5, 5), "七夕": (7, 7), "中秋": (8, 15), "重阳": (9, 9)}
BIRTHS = ["1956-09-19", "1984-10-24", "1987-08-24", "1995-10-08", "1962-02-03", "1949-01-28", "1972-11-05", "2009-07-10"]


def lunar_birthday(born: date, year: int) -> str:
    lunar = Solar.fromYmd(born.year, born.month, born.day).getLunar()
    month, day = abs(lunar.getMonth()), lunar.getDay()  # a negative month is a leap month
    day = min(day, LunarMonth.fromYm(year, month).getDayCount())
    return Lunar.fromYmd(year, month, day).getSolar().toYmd()


def main() -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["kind", "name", "lunar_year", "gregorian"])
    for year in range(2026, 2036):
        for name, (month, day) in FESTIVALS.items():
            out.writerow(["festival", name, year, Lunar.fromYmd(year, month, day).getSolar().toYmd()])
    for born in BIRTHS:
        for year in range(2026, 2036):
            out.writerow(["birthday", born, year, lunar_birthday(date.fromisoformat(born), year)])


if __name__ == "__main__":
    main()
