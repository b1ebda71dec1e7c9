"""The seed notebook (`shared/seed/notebook.txt`) on face_search's engines.

Its code is the notebook's, cell by cell, with two imports changed:
`import hnswlib` -> `from face_search import hnswlib` and
`from annoy import AnnoyIndex` -> `from face_search.annoy import AnnoyIndex`.
The only other differences: `hash_df` is synthetic (the notebook read a pickle of real
ArcFace embeddings we do not have), the files go to a `search_files/` folder made in the
current directory, the number of random distractors can be lowered with the environment
variable FACE_SEARCH_NOTEBOOK_RANDOM (default 100000, the notebook's; the test uses fewer),
and the cells' displayed values are printed.

Run: python python/examples/notebook.py   (from any directory it may write into)
"""

# In [1]:
import pandas as pd
import numpy as np
from face_search import hnswlib
import time

from face_search.annoy import AnnoyIndex

# In [2]: a synthetic hash_df: ten people with 1-5 ArcFace-like 512-d embeddings each
# (a person's images share a direction: cosine about 0.6 between them, about 0 to others).
import os

N_RANDOM = int(float(os.environ.get("FACE_SEARCH_NOTEBOOK_RANDOM", 1e5)))
os.makedirs("search_files", exist_ok=True)
_rng = np.random.default_rng(7)
_people = {
    "Alex_Koji": 1, "Ariel_Guerreiro": 2, "Camila_Fonseca": 2, "Eduardo_Eiras": 5,
    "Fernanda_Lima": 3, "Gabriel_Souza": 4, "Helena_Prado": 1, "Igor_Mendes": 2,
    "Julia_Reis": 5, "Lucas_Tavares": 3,
}
_rows, _names = [], []
for _person, _count in _people.items():
    _centre = _rng.normal(size=512)
    for _i in range(1, _count + 1):
        _rows.append((_centre + 0.8 * _rng.normal(size=512)).astype(np.float32))
        _names.append(f"{_person}{_i}")
hash_df = pd.DataFrame({"ArcFace": _rows}, index=_names)

# In [3]:
print(hash_df)

# In [4]:
data = hash_df['ArcFace'].to_numpy()
data = np.stack(data)

query = data[5, :]

data = np.delete(data, [5], axis=0)
random_data = np.random.normal(loc=0.0, scale=1.0, size=(N_RANDOM, data.shape[1]))
data = np.concatenate([data, random_data], axis=0)


data_labels = list(hash_df.index)
query_label = data_labels[5]
del data_labels[5]
random_labels = ['random_{}'.format(i) for i in range(N_RANDOM)]
data_labels = data_labels + random_labels
data_labels = np.asarray(data_labels)

# In [5]:
def linear_search(query, data, data_labels, threshold=.35):

    query = np.expand_dims(query, axis=-1)
    data_dot_query = np.dot(data, query)

    diag = (data*data).sum(axis=-1)
    diag = np.expand_dims(diag, axis=-1)

    query_norm2 = np.dot(query.T, query)

    cosines = np.divide(data_dot_query, np.sqrt(query_norm2*diag))
    verif = cosines > threshold
    verif = verif.squeeze(axis=-1)

    return data_labels[np.argwhere(verif==True)]

# In [6]:
with open('search_files/search_data.npy', 'wb') as f:
    np.save(f, data)
    np.save(f, data_labels)

del data
del data_labels

# In [7]:
tic = time.time()
with open('search_files/search_data.npy', 'rb') as f:
    data = np.load(f)
    data_labels = np.load(f)
toc = time.time()

linear_load_time = toc - tic

# In [8]:
tic = time.time()
linear_labels = linear_search(query, data, data_labels, threshold=.35)
toc = time.time()

linear_query_time = toc - tic

# In [9]:
graph = hnswlib.Index(space='cosine', dim=512)
graph.init_index(max_elements=len(data), ef_construction=200, M=48)
graph.add_items(data, np.arange(len(data_labels)))
graph.set_ef(100)
graph.save_index('search_files/hnsw.bin')

del graph

# In [40]:
tic = time.time()
graph = hnswlib.Index(space='cosine', dim=512)
graph.load_index('search_files/hnsw.bin')
toc = time.time()

hnsw_load_time = toc - tic

# In [41]:
tic = time.time()
labels, distances = graph.knn_query(query, k=4)
toc = time.time()

# In [42]:
hnsw_labels = data_labels[labels]
hnsw_query_time = toc - tic

# In [13]:
del graph

# In [14]:
forest = AnnoyIndex(512, 'angular')

for i in range(len(data)):
    v = data[i, :]
    forest.add_item(i, v)

forest.build(n_trees=20)
forest.save('search_files/forest.ann')
del forest

# In [26]:
tic = time.time()
forest = AnnoyIndex(512, 'angular')
forest.load('search_files/forest.ann')
toc = time.time()

annoy_load_time = toc - tic

# In [31]:
tic = time.time()
labels = forest.get_nns_by_vector(query, n=4)
toc = time.time()

# In [32]:
annoy_labels = data_labels[labels]
annoy_query_time = toc - tic

# In [18]:
del forest

# In [19]:
print("query_label:", repr(query_label))

# In [20]:
print("linear_labels:", repr(linear_labels))

# In [43]:
print("hnsw_labels:", repr(hnsw_labels))

# In [44]:
print("annoy_labels:", repr(annoy_labels))

# In [45]:
time_df = pd.DataFrame(columns=['Load', 'Query', 'Total'], index=['Busca Linear', 'HNSW', 'Annoy'])

# In [46]:
load_list = [linear_load_time, hnsw_load_time, annoy_load_time]
query_list = [linear_query_time, hnsw_query_time, annoy_query_time]

time_df['Load'] = load_list
time_df['Query'] = query_list
time_df['Total'] = time_df['Load'] + time_df['Query']

# In [47]:
print(time_df)
