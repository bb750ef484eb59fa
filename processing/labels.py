"""What people read in a report: a column's label in English and Russian, and which summary figures are money.

One table for every report, so a column is called the same everywhere it appears; the identifiers stay
in JSON, which programs read.
"""

from __future__ import annotations

__all__ = ["LANGUAGES", "label", "SUMMARY_MONEY", "TITLES_RU"]

LANGUAGES = ("en", "ru")

_LABELS: dict[str, tuple[str, str]] = {
    "account": ("Account", "Счёт"),
    "account_name": ("Account name", "Наименование счёта"),
    "amount": ("Amount", "Сумма"),
    "balance": ("Balance", "Сальдо"),
    "balance_after": ("Balance after", "Остаток после операции"),
    "batch": ("Batch", "Пакет"),
    "batch_id": ("Batch", "Пакет"),
    "batches": ("Batches", "Пакетов"),
    "cancellations": ("Cancellations", "Отмены"),
    "cancels": ("Cancels", "Отмен"),
    "card_number": ("Card number", "Номер карты"),
    "cards": ("Cards", "Карт"),
    "cash_outs": ("Paid out at card return", "Выплачено при возврате карт"),
    "closing_credit": ("Closing balance, credit", "Сальдо на конец, кредит"),
    "closing_debit": ("Closing balance, debit", "Сальдо на конец, дебет"),
    "closing_float": ("Closing float", "Остаток на картах на конец дня"),
    "counter": ("Card counter", "Счётчик карты"),
    "credit": ("Credit", "Кредит"),
    "day": ("Day", "Дата"),
    "days_since_last_batch": ("Days since last batch", "Дней с последнего пакета"),
    "debit": ("Debit", "Дебет"),
    "deposit": ("Card deposit", "Залог за карту"),
    "description": ("Description", "Содержание"),
    "detail": ("Detail", "Подробности"),
    "detected_at": ("Detected at", "Обнаружено"),
    "entry": ("Entry", "Проводка"),
    "evidence": ("Evidence", "Доказательства"),
    "fee": ("Fee", "Комиссия"),
    "figure": ("Figure", "Показатель"),
    "formula": ("Formula", "Формула"),
    "gross": ("Gross sales", "Продажи"),
    "item": ("Item", "Статья"),
    "kind": ("Kind", "Вид"),
    "last_batch_at": ("Last batch at", "Последний пакет"),
    "last_batch_seq": ("Last batch", "Номер последнего пакета"),
    "loads": ("Loaded at the desks", "Пополнения в кассе"),
    "transfer_loads": ("Loaded from replaced cards", "Перенесено на новые карты"),
    "merchant": ("Merchant", "Торговая точка"),
    "merchant_id": ("Merchant no.", "Код точки"),
    "name": ("Name", "Название"),
    "net": ("Net payable", "К перечислению"),
    "net_change": ("Net change", "Изменение за день"),
    "net_sales": ("Net sales", "Чистые продажи"),
    "opening": ("Opening float", "Остаток на начало"),
    "opening_credit": ("Opening balance, credit", "Сальдо на начало, кредит"),
    "opening_debit": ("Opening balance, debit", "Сальдо на начало, дебет"),
    "points_after": ("Points after", "Баллы после операции"),
    "points_earned": ("Points earned", "Начислено баллов"),
    "points_lapsed": ("Points lapsed", "Сгорело баллов"),
    "points_outstanding": ("Points outstanding", "Баллов на картах"),
    "points_opening": ("Points at the opening", "Баллов на начало"),
    "points_closing": ("Points at the closing", "Баллов на конец"),
    "points_difference": ("Difference (0 when records chain)", "Расхождение (0 при цепочке записей)"),
    "points_redeemed": ("Points redeemed", "Списано баллов"),
    "points_to_prizes": ("Points turned into prizes", "Баллов обменяно на призы"),
    "program": ("Program", "Программа"),
    "program_id": ("Program no.", "Код программы"),
    "purchases": ("Purchases", "Покупки"),
    "replaced_cards": ("Moved off replaced cards", "Перенесено с заменённых карт"),
    "source": ("Source", "Источник"),
    "state": ("State", "Состояние"),
    "terminal_id": ("Terminal", "Терминал"),
    "time": ("Time", "Время"),
    "turnover_credit": ("Turnover, credit", "Обороты, кредит"),
    "turnover_debit": ("Turnover, debit", "Обороты, дебет"),
    "type": ("Type", "Тип"),
    "statement": ("Statement No.", "Номер отчёта"),
    "last_used": ("Last used", "Последняя операция"),
    "idle_days": ("Days unused", "Дней без операций"),
    "expiry": ("Expiry", "Срок действия"),
    "reason": ("Reason", "Причина"),
    "until": ("Sales before", "Продажи до"),
    "tax_number": ("INN", "ИНН"),
    "fee_bps": ("Fee, basis points", "Комиссия, б. п."),
}

# A report's title for a Russian reader, by report kind (a title with figures in it carries its own).
TITLES_RU: dict[str, str] = {
    "journal": "Журнал проводок",
    "ledger": "Главная книга по счетам (сальдо: дебет со знаком плюс, кредит со знаком минус)",
    "trial-balance": "Оборотно-сальдовая ведомость",
    "settlement": "Расчёты с торговыми точками по дням и терминалам",
    "float": "Остаток денег на картах (обязательство эмитента) по дням",
    "points": "Баллы на картах по программам",
    "anomalies": "Аномалии с доказательствами",
    "terminals": "Терминалы: последний пакет и продажи за период",
    "cards": "Карты в реестре по состоянию",
    "payback": "Окупаемость карточной системы",
}

# Summary figures that are money (minor units inside, major units with the currency for people).
SUMMARY_MONEY = frozenset({
    "gross", "cancellations", "fee", "net", "balance", "opening_float", "closing_float", "average_float",
    "interest_per_year_at_average_float", "interest_for_period", "debits", "credits", "system_cost",
    "deposit_per_card", "monthly_loads", "monthly_spend_per_card", "deposits",
})


def label(name: str, language: str) -> str:
    """A column's label in ``language`` ("en" or "ru"); an unknown identifier is spelled out."""
    labels = _LABELS.get(name)
    if labels is None:
        return name.replace("_", " ").capitalize()
    return labels[LANGUAGES.index(language)] if language in LANGUAGES else labels[0]
