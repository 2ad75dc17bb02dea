"""Straightforward transcriptions of disentanglement_lib's metric code (google-research/disentanglement_lib,
evaluation/metrics/*.py), in its (num_codes, num_points) layout, used only as the truth in tests."""
import numpy as np
import scipy.linalg
import scipy.stats
import sklearn.metrics
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn import svm


def histogram_discretize(target, num_bins=20):
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return discretized


def discrete_mutual_info(mus, ys):
    m = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = sklearn.metrics.mutual_info_score(ys[j, :], mus[i, :])
    return m


def discrete_entropy(ys):
    return np.array([sklearn.metrics.mutual_info_score(ys[j, :], ys[j, :]) for j in range(ys.shape[0])])


def mig(mus_train, ys_train):
    m = discrete_mutual_info(histogram_discretize(mus_train), ys_train)
    entropy = discrete_entropy(ys_train)
    sorted_m = np.sort(m, axis=0)[::-1]
    return np.mean(np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:]))


def compute_importance_gbt(x_train, y_train, x_test, y_test, random_state):
    importance_matrix = np.zeros([x_train.shape[0], y_train.shape[0]])
    train_loss, test_loss = [], []
    for i in range(y_train.shape[0]):
        model = GradientBoostingClassifier(random_state=random_state)
        model.fit(x_train.T, y_train[i, :])
        importance_matrix[:, i] = np.abs(model.feature_importances_)
        train_loss.append(np.mean(model.predict(x_train.T) == y_train[i, :]))
        test_loss.append(np.mean(model.predict(x_test.T) == y_test[i, :]))
    return importance_matrix, np.mean(train_loss), np.mean(test_loss)


def disentanglement(importance_matrix):
    per_code = 1. - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])
    if importance_matrix.sum() == 0.:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return np.sum(per_code * code_importance)


def completeness(importance_matrix):
    per_factor = 1. - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])
    if importance_matrix.sum() == 0.:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return np.sum(per_factor * factor_importance)


def sap(mus, ys, mus_test, ys_test, continuous_factors, random_state):
    score_matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            mu_i, y_j = mus[i, :], ys[j, :]
            if continuous_factors:
                cov_mu_i_y_j = np.cov(mu_i, y_j, ddof=1)
                cov_mu_y = cov_mu_i_y_j[0, 1] ** 2
                var_mu, var_y = cov_mu_i_y_j[0, 0], cov_mu_i_y_j[1, 1]
                score_matrix[i, j] = cov_mu_y * 1. / (var_mu * var_y) if var_mu > 1e-12 else 0.
            else:
                classifier = svm.LinearSVC(C=0.01, class_weight="balanced", random_state=random_state)
                classifier.fit(mu_i[:, np.newaxis], y_j)
                pred = classifier.predict(mus_test[i, :][:, np.newaxis])
                score_matrix[i, j] = np.mean(pred == ys_test[j, :])
    sorted_matrix = np.sort(score_matrix, axis=0)
    return np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :])


def modularity(mutual_information):
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.)
    with np.errstate(divide="ignore", invalid="ignore"):
        modularity_score = 1. - numerator / denominator
    modularity_score[max_squared_mi == 0.] = 0.
    return np.mean(modularity_score)


def normalize_data(data, mean=None, stddev=None):
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
    return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    x_train, x_test = np.transpose(mus_train), np.transpose(mus_test)
    clf = LogisticRegression().fit(x_train, y_train)
    mlb = MultiLabelBinarizer()
    roc_train = roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), clf.predict_proba(x_train))
    roc_test = roc_auc_score(mlb.fit_transform(np.expand_dims(y_test, 1)), clf.predict_proba(x_test))
    return roc_train, roc_test


def modularity_explicitness(mus_train, ys_train, mus_test, ys_test):
    mi = discrete_mutual_info(histogram_discretize(mus_train), ys_train)
    mus_train_norm, mean_mus, stddev_mus = normalize_data(mus_train)
    mus_test_norm, _, _ = normalize_data(mus_test, mean_mus, stddev_mus)
    scores = [explicitness_per_factor(mus_train_norm, ys_train[i, :], mus_test_norm, ys_test[i, :])
              for i in range(ys_train.shape[0])]
    return modularity(mi), np.mean([s[0] for s in scores]), np.mean([s[1] for s in scores])


def gaussian_total_correlation(cov):
    return 0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1])


def gaussian_wasserstein_correlation(cov):
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return 2 * np.trace(cov) - 2 * np.trace(sqrtm)


def unsupervised(mus_train):
    num_codes = mus_train.shape[0]
    cov_mus = np.cov(mus_train)
    scores = {"gaussian_total_correlation": gaussian_total_correlation(cov_mus),
              "gaussian_wasserstein_correlation": gaussian_wasserstein_correlation(cov_mus)}
    scores["gaussian_wasserstein_correlation_norm"] = scores["gaussian_wasserstein_correlation"] / np.sum(np.diag(cov_mus))
    mus_discrete = histogram_discretize(mus_train)
    mutual_info_matrix = discrete_mutual_info(mus_discrete, mus_discrete)
    np.fill_diagonal(mutual_info_matrix, 0)
    scores["mutual_info_score"] = np.sum(mutual_info_matrix) / (num_codes ** 2 - num_codes)
    return scores


def factor_vae_votes(batch_codes, factor_index, global_variances, active_dims, num_factors):
    votes = np.zeros((num_factors, global_variances.shape[0]), dtype=np.int64)
    for codes, k in zip(batch_codes, factor_index):
        local_variances = np.var(codes, axis=0, ddof=1)
        argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
        votes[k, argmin] += 1
    return votes


def generate_batch_factor_code(ground_truth_data, representation_function, num_points, random_state, batch_size):
    representations, factors, i = None, None, 0
    while i < num_points:
        num_points_iter = min(num_points - i, batch_size)
        current_factors, current_observations = ground_truth_data.sample(num_points_iter, random_state)
        if i == 0:
            factors = current_factors
            representations = representation_function(current_observations)
        else:
            factors = np.vstack((factors, current_factors))
            representations = np.vstack((representations, representation_function(current_observations)))
        i += num_points_iter
    return np.transpose(representations), np.transpose(factors)


def compute_factor_vae(ground_truth_data, representation_function, random_state, batch_size, num_train, num_eval,
                       num_variance_estimate, threshold=0.05):
    observations = ground_truth_data.sample(num_variance_estimate, random_state)[1]
    global_variances = np.var(representation_function(observations), axis=0, ddof=1)
    active_dims = np.sqrt(global_variances) >= threshold
    if not active_dims.any():
        return {"train_accuracy": 0., "eval_accuracy": 0., "num_active_dims": 0}

    def votes_for(num_points):
        votes = np.zeros((ground_truth_data.num_factors, global_variances.shape[0]), dtype=np.int64)
        for _ in range(num_points):
            factor_index = random_state.randint(ground_truth_data.num_factors)
            factors = ground_truth_data.sample_factors(batch_size, random_state)
            factors[:, factor_index] = factors[0, factor_index]
            obs = ground_truth_data.sample_observations_from_factors(factors, random_state)
            local_variances = np.var(representation_function(obs), axis=0, ddof=1)
            argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
            votes[factor_index, argmin] += 1
        return votes

    training_votes = votes_for(num_train)
    classifier = np.argmax(training_votes, axis=0)
    other_index = np.arange(training_votes.shape[1])
    train_accuracy = np.sum(training_votes[classifier, other_index]) * 1. / np.sum(training_votes)
    eval_votes = votes_for(num_eval)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) * 1. / np.sum(eval_votes)
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy, "num_active_dims": len(active_dims)}


def compute_beta_vae_sklearn(ground_truth_data, representation_function, random_state, batch_size, num_train,
                             num_eval):
    def batch(num_points):
        points, labels = None, np.zeros(num_points, dtype=np.int64)
        for i in range(num_points):
            index = random_state.randint(ground_truth_data.num_factors)
            factors1 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2[:, index] = factors1[:, index]
            observation1 = ground_truth_data.sample_observations_from_factors(factors1, random_state)
            observation2 = ground_truth_data.sample_observations_from_factors(factors2, random_state)
            feature_vector = np.mean(np.abs(representation_function(observation1)
                                            - representation_function(observation2)), axis=0)
            labels[i] = index
            if points is None:
                points = np.zeros((num_points, feature_vector.shape[0]))
            points[i, :] = feature_vector
        return points, labels

    train_points, train_labels = batch(num_train)
    model = LogisticRegression(random_state=random_state)
    model.fit(train_points, train_labels)
    train_accuracy = np.mean(model.predict(train_points) == train_labels)
    eval_points, eval_labels = batch(num_eval)
    return {"train_accuracy": train_accuracy, "eval_accuracy": model.score(eval_points, eval_labels)}
