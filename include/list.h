/*
 * Intrusive circular doubly-linked lists. Every connection state in pgtenant
 * maps to exactly one list, so "who is waiting" is a list walk, never a scan
 * of all connections. An unlinked node points at itself.
 */
#ifndef PGTENANT_LIST_H
#define PGTENANT_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct List {
	struct List *next;
	struct List *prev;
} List;

#define list_entry(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))
#define list_for_each(item, head)                                                                  \
	for ((item) = (head)->next; (item) != (head); (item) = (item)->next)
#define list_for_each_safe(item, head, tmp)                                                        \
	for ((item) = (head)->next, (tmp) = (item)->next; (item) != (head);                        \
	     (item) = (tmp), (tmp) = (item)->next)

static inline void list_init(List *l)
{
	l->next = l->prev = l;
}

static inline bool list_empty(const List *l)
{
	return l->next == l;
}

static inline void list_append(List *head, List *item)
{
	item->prev = head->prev;
	item->next = head;
	head->prev->next = item;
	head->prev = item;
}

static inline void list_prepend(List *head, List *item)
{
	item->next = head->next;
	item->prev = head;
	head->next->prev = item;
	head->next = item;
}

static inline void list_del(List *item)
{
	item->prev->next = item->next;
	item->next->prev = item->prev;
	item->next = item->prev = item;
}

static inline List *list_first(const List *head)
{
	return list_empty(head) ? NULL : head->next;
}

#endif
