/*
 * The filter tree of mqtt.core: topic filters stored level by level, so that
 * the filters matching a topic are found by following the topic's levels
 * instead of trying every filter. It knows filters and node ids only; the
 * callbacks, their order and the conditions stay in the Lua half
 * (lua/mqtt/route.lua). Matching follows mqtt_topic_matches exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "route.h"
#include "mqtt.h"

#define TREE_MT "zmqtt.core.filter_tree"

typedef struct rt_node rt_node;
struct rt_node {
    rt_node *parent;
    rt_node *plus, *hash; /* the "+" and "#" children */
    rt_node **kids;       /* other children, open addressing by level; NULL when none */
    uint32_t nkids, cap;  /* cap: 0 or a power of two, at least twice nkids */
    uint32_t ends;        /* registrations of the filter that ends here */
    uint32_t id;          /* index in the tree's ids */
    uint32_t key;         /* hash of level */
    size_t len;
    char level[];         /* this node's level, len bytes */
};

typedef struct rt_walk {
    const rt_node *node;
    size_t start; /* where the next level of the topic starts; len + 1: none left */
} rt_walk;

typedef struct rt_tree {
    rt_node *root;
    rt_node **ids;   /* ids[id] is the node with that id, NULL when free */
    uint32_t nids;   /* ids used so far, the root's (0) included */
    uint32_t idcap;
    uint32_t *freed; /* ids to reuse */
    uint32_t nfreed;
    rt_walk *stack;  /* the match's work list, kept between calls */
    size_t stackcap;
} rt_tree;

/* End of the level starting at i (the next '/' or len), and its key: FNV-1a
 * over the level's bytes. */
static size_t level_scan(const char *s, size_t len, size_t i, uint32_t *key)
{
    uint32_t h = 2166136261u;
    while (i < len && s[i] != '/')
        h = (h ^ (uint8_t)s[i++]) * 16777619u;
    *key = h;
    return i;
}

static int same_level(const rt_node *n, uint32_t key, const char *s, size_t len)
{
    return n->key == key && n->len == len && memcmp(n->level, s, len) == 0;
}

/* The child of n for a literal level, or NULL. */
static rt_node *kid_find(const rt_node *n, const char *s, size_t len, uint32_t key)
{
    if (n->cap == 0)
        return NULL;
    uint32_t mask = n->cap - 1;
    for (uint32_t i = key & mask;; i = (i + 1) & mask) {
        rt_node *k = n->kids[i];
        if (k == NULL || same_level(k, key, s, len))
            return k;
    }
}

static void kid_place(rt_node **kids, uint32_t mask, rt_node *k)
{
    uint32_t i = k->key & mask;
    while (kids[i] != NULL)
        i = (i + 1) & mask;
    kids[i] = k;
}

/* Adds k to n's children; 0 when out of memory (n unchanged). */
static int kid_add(rt_node *n, rt_node *k)
{
    if (2 * (n->nkids + 1) > n->cap) {
        uint32_t cap = n->cap ? 2 * n->cap : 4;
        rt_node **kids = calloc(cap, sizeof(rt_node *));
        if (kids == NULL)
            return 0;
        for (uint32_t i = 0; i < n->cap; i++)
            if (n->kids[i] != NULL)
                kid_place(kids, cap - 1, n->kids[i]);
        free(n->kids);
        n->kids = kids;
        n->cap = cap;
    }
    kid_place(n->kids, n->cap - 1, k);
    n->nkids++;
    return 1;
}

/* Removes k from n's children, moving back the entries that probed past it. */
static void kid_remove(rt_node *n, const rt_node *k)
{
    uint32_t mask = n->cap - 1, i = k->key & mask;
    while (n->kids[i] != k)
        i = (i + 1) & mask;
    for (uint32_t j = (i + 1) & mask; n->kids[j] != NULL; j = (j + 1) & mask) {
        uint32_t home = n->kids[j]->key & mask;
        /* j's entry may fill the hole at i when its home is not in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            n->kids[i] = n->kids[j];
            i = j;
        }
    }
    n->kids[i] = NULL;
    n->nkids--;
}

/* A new node with an id, not yet linked; NULL when out of memory. */
static rt_node *node_new(rt_tree *t, const char *s, size_t len, uint32_t key)
{
    if (t->nfreed == 0 && t->nids == t->idcap) {
        uint32_t cap = t->idcap ? 2 * t->idcap : 16;
        rt_node **ids = realloc(t->ids, cap * sizeof(rt_node *));
        uint32_t *freed = realloc(t->freed, cap * sizeof *freed);
        if (ids != NULL)
            t->ids = ids;
        if (freed != NULL)
            t->freed = freed;
        if (ids == NULL || freed == NULL)
            return NULL;
        t->idcap = cap;
    }
    rt_node *n = calloc(1, sizeof *n + len);
    if (n == NULL)
        return NULL;
    memcpy(n->level, s, len);
    n->len = len;
    n->key = key;
    n->id = t->nfreed ? t->freed[--t->nfreed] : t->nids++;
    t->ids[n->id] = n;
    return n;
}

static void node_free(rt_tree *t, rt_node *n)
{
    t->ids[n->id] = NULL;
    t->freed[t->nfreed++] = n->id;
    free(n->kids);
    free(n);
}

/* Frees n and the ancestors left with nothing to hold, up to the root. */
static void prune(rt_tree *t, rt_node *n)
{
    while (n != t->root && n->ends == 0 && n->nkids == 0 && n->plus == NULL && n->hash == NULL) {
        rt_node *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            kid_remove(p, n);
        node_free(t, n);
        n = p;
    }
}

/* The child of n for level s (key: its hash), created when missing; NULL when
 * out of memory. */
static rt_node *child(rt_tree *t, rt_node *n, const char *s, size_t len, uint32_t key)
{
    rt_node **wild = NULL;
    if (len == 1 && s[0] == '+')
        wild = &n->plus;
    else if (len == 1 && s[0] == '#')
        wild = &n->hash;
    if (wild != NULL && *wild != NULL)
        return *wild;
    rt_node *k = wild ? NULL : kid_find(n, s, len, key);
    if (k != NULL)
        return k;
    k = node_new(t, s, len, key);
    if (k == NULL)
        return NULL;
    k->parent = n;
    if (wild != NULL) {
        *wild = k;
    } else if (!kid_add(n, k)) {
        node_free(t, k);
        return NULL;
    }
    return k;
}

/* The node where a valid filter ends, created as needed; NULL when out of memory
 * (then nothing was added). */
static rt_node *tree_add(rt_tree *t, const char *f, size_t len)
{
    rt_node *n = t->root;
    size_t i = 0;
    for (;;) {
        uint32_t key;
        size_t end = level_scan(f, len, i, &key);
        rt_node *k = child(t, n, f + i, end - i, key);
        if (k == NULL) {
            prune(t, n);
            return NULL;
        }
        n = k;
        if (end == len)
            break;
        i = end + 1;
    }
    n->ends++;
    return n;
}

/* Makes room for one more entry on the work list; 0 when out of memory. */
static int stack_reserve(rt_tree *t, size_t used)
{
    if (used < t->stackcap)
        return 1;
    size_t cap = t->stackcap ? 2 * t->stackcap : 32;
    rt_walk *s = realloc(t->stack, cap * sizeof *s);
    if (s == NULL)
        return 0;
    t->stack = s;
    t->stackcap = cap;
    return 1;
}

/* The matches of one walk: the first id is returned apart, the others go
 * to the table at out from index 2 on, which spares the common single match
 * a table write. */
typedef struct rt_found {
    int count;
    int out;
    lua_Integer first;
} rt_found;

static void found_add(lua_State *L, rt_found *f, uint32_t id)
{
    if (++f->count == 1) {
        f->first = id;
        return;
    }
    lua_pushinteger(L, id);
    lua_rawseti(L, f->out, f->count);
}

/* Finds the nodes whose filter matches the topic and ends there; 0, or -1
 * when out of memory. A "#" also matches its parent level; a topic starting
 * with '$' is not matched by a wildcard first level (MQTT 4.7.2). */
static int tree_match(lua_State *L, rt_tree *t, const char *topic, size_t len, rt_found *f)
{
    size_t used = 0;
    if (len == 0 || t->root == NULL)
        return 0;
    t->stack[used++] = (rt_walk){t->root, 0};
    while (used > 0) {
        rt_walk w = t->stack[--used];
        const rt_node *n = w.node;
        int wild = !(n == t->root && topic[0] == '$');
        if (wild && n->hash != NULL && n->hash->ends > 0)
            found_add(L, f, n->hash->id);
        if (w.start > len) {
            if (n->ends > 0)
                found_add(L, f, n->id);
            continue;
        }
        uint32_t key;
        size_t end = level_scan(topic, len, w.start, &key);
        size_t next = end + 1; /* past the end when this was the last level */
        const rt_node *k = kid_find(n, topic + w.start, end - w.start, key);
        if (!stack_reserve(t, used + 2))
            return -1;
        if (k != NULL)
            t->stack[used++] = (rt_walk){k, next};
        if (wild && n->plus != NULL)
            t->stack[used++] = (rt_walk){n->plus, next};
    }
    return 0;
}

static void tree_free(rt_tree *t)
{
    for (uint32_t i = 0; i < t->nids; i++) {
        if (t->ids[i] != NULL) {
            free(t->ids[i]->kids);
            free(t->ids[i]);
        }
    }
    free(t->ids);
    free(t->freed);
    free(t->stack);
    memset(t, 0, sizeof *t);
}

/* ---- Lua ---------------------------------------------------------------- */

/* The tree at argument 1. The functions have the tree metatable as upvalue 1:
 * comparing with it is cheaper than luaL_checkudata's registry lookup, and
 * tree_match runs for every message; luaL_checkudata raises for the rest. */
static rt_tree *check_tree(lua_State *L)
{
    rt_tree *t = lua_touserdata(L, 1);
    int ok = t != NULL && lua_getmetatable(L, 1);
    if (ok) {
        ok = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
    }
    if (!ok)
        t = luaL_checkudata(L, 1, TREE_MT);
    if (t->root == NULL)
        luaL_error(L, "filter tree is closed");
    return t;
}

/* core.filter_tree() -> tree */
static int l_tree_new(lua_State *L)
{
    rt_tree *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TREE_MT);
    t->root = node_new(t, "", 0, 0);
    if (t->root == NULL || !stack_reserve(t, 0)) {
        tree_free(t);
        return luaL_error(L, "not enough memory");
    }
    return 1;
}

/* core.tree_add(tree, filter) -> id of the node where filter ends */
static int l_tree_add(lua_State *L)
{
    rt_tree *t = check_tree(L);
    size_t len;
    const char *f = luaL_checklstring(L, 2, &len);
    const char *why = NULL;
    if (mqtt_validate_topic_filter(f, len, &why) != MQTT_OK)
        return luaL_argerror(L, 2, why);
    size_t shared = mqtt_shared_filter_start(f, len); /* routed by its filter part */
    rt_node *n = tree_add(t, f + shared, len - shared);
    if (n == NULL)
        return luaL_error(L, "not enough memory");
    lua_pushinteger(L, n->id);
    return 1;
}

/* core.tree_remove(tree, id): undoes one tree_add that returned id. */
static int l_tree_remove(lua_State *L)
{
    rt_tree *t = check_tree(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    if (id <= 0 || id >= t->nids || t->ids[id] == NULL || t->ids[id]->ends == 0)
        return luaL_argerror(L, 2, "no filter ends at this id");
    rt_node *n = t->ids[id];
    n->ends--;
    prune(t, n);
    return 0;
}

/* core.tree_match(tree, topic, out) -> count[, first]: the ids of the filters
 * that match, the first returned, the others in out[2..count] */
static int l_tree_match(lua_State *L)
{
    rt_tree *t = check_tree(L);
    size_t len;
    const char *topic = luaL_checklstring(L, 2, &len);
    luaL_checktype(L, 3, LUA_TTABLE);
    rt_found f = {0, 3, 0};
    if (tree_match(L, t, topic, len, &f) < 0)
        return luaL_error(L, "not enough memory");
    lua_pushinteger(L, f.count);
    if (f.count == 0)
        return 1;
    lua_pushinteger(L, f.first);
    return 2;
}

static int l_tree_gc(lua_State *L)
{
    tree_free(luaL_checkudata(L, 1, TREE_MT));
    return 0;
}

void mqtt__lua_route_open(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"filter_tree", l_tree_new},   {"tree_add", l_tree_add},
        {"tree_remove", l_tree_remove}, {"tree_match", l_tree_match},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, TREE_MT)) {
        lua_pushcfunction(L, l_tree_gc);
        lua_setfield(L, -2, "__gc");
    }
    luaL_setfuncs(L, functions, 1);
}
